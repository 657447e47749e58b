//! One pass over the persons, chunk by chunk: each chunk yields its persons,
//! the companies founded by them, and the utility, social-insurance, tax and
//! health rows that belong to both. One writer thread per table encodes
//! Parquet, fed through bounded channels, so memory stays flat whatever the
//! number of persons.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use chrono::{Datelike, Duration, NaiveDate};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::RngExt;

use crate::population::{DATA_YEAR, PERSONS_PER_COMPANY, Person, World};
use crate::regions::{COUNTIES, is_urban};
use crate::sample::{Weighted, lognormal, poisson, rng_for, round2};
use crate::tables::{Rows, TABLES, Value};
use crate::{GenerateError, Options, TableSummary, manifests, vocab};

/// Persons per chunk: a multiple of [`PERSONS_PER_COMPANY`].
const CHUNK: u64 = 20_000;
const ROW_GROUP: usize = 256 * 1024;

const STREAM_PERSONS: u64 = 1;
const STREAM_UTILITY: u64 = 10;
const STREAM_INSURANCE: u64 = 11;
const STREAM_HEALTH: u64 = 12;

/// The large hospitals in Kunming that draw patients from everywhere, with
/// the district they stand in.
const PROVINCIAL_HOSPITALS: [(&str, &str); 6] = [
    ("云南省第一人民医院", "530102"),
    ("云南省第二人民医院", "530102"),
    ("昆明医科大学第一附属医院", "530102"),
    ("昆明医科大学第二附属医院", "530103"),
    ("云南省肿瘤医院", "530112"),
    ("云南省中医医院", "530102"),
];

pub fn run(
    out: &Path,
    options: &Options,
    progress: &dyn Fn(u64),
) -> Result<Vec<TableSummary>, GenerateError> {
    fs::create_dir_all(out)?;
    let mut world = World::new(options.seed, options.persons);
    let writers: Vec<Writer> = TABLES
        .iter()
        .map(|t| Writer::spawn(out, t))
        .collect::<Result<_, _>>()?;
    let mut state = Counters::default();
    let mut result = Ok(());
    let mut start = 0;
    while start < options.persons {
        let end = (start + CHUNK).min(options.persons);
        if let Err(e) = chunk(&mut world, &mut state, start, end, &writers) {
            result = Err(e);
            break;
        }
        progress(end - start);
        start = end;
    }
    // Close every channel, then collect every writer, even after an error,
    // so no thread is left behind.
    let finished: Vec<_> = writers.into_iter().map(Writer::finish).collect();
    result?;
    let mut summaries = Vec::new();
    for f in finished {
        summaries.push(f?);
    }
    for table in TABLES {
        fs::write(out.join(format!("{table}.toml")), manifests::text(table))?;
    }
    Ok(summaries)
}

#[derive(Default)]
struct Counters {
    accounts: u64,
}

fn chunk(
    world: &mut World,
    counters: &mut Counters,
    start: u64,
    end: u64,
    writers: &[Writer],
) -> Result<(), GenerateError> {
    let seed = world.seed;
    let index = start / CHUNK;
    let mut rng = rng_for(seed, STREAM_PERSONS, index);
    let persons: Vec<Person> = (start..end).map(|_| world.person(&mut rng)).collect();

    let mut population = Rows::new("population");
    for p in &persons {
        let code = p.county().code.to_string();
        population.push(&[
            Value::Text(&p.id_number),
            Value::Text(&p.name),
            Value::Text(if p.male { "M" } else { "F" }),
            Value::Date(p.birth_date),
            Value::Text(p.ethnicity),
            Value::Text(&code),
            Value::Text(&p.address),
            Value::MaybeText(p.phone.as_deref()),
            Value::Text(p.education),
            Value::Text(p.marital_status),
        ]);
    }

    let mut legal = Rows::new("legal_persons");
    let mut utility = Rows::new("utility_usage");
    let mut tax = Rows::new("tax");
    let mut urng = rng_for(seed, STREAM_UTILITY, index);

    let first_block = start / PERSONS_PER_COMPANY;
    let last_block = end.div_ceil(PERSONS_PER_COMPANY);
    for j in first_block..last_block {
        let mut company = world.company(j);
        let lo = (j * PERSONS_PER_COMPANY - start) as usize;
        let hi = ((j + 1) * PERSONS_PER_COMPANY).min(end) - start;
        let block = &persons[lo..hi as usize];
        // The legal representative: a random adult of the block, or its
        // oldest member when the block has no adult.
        let adults: Vec<&Person> = block.iter().filter(|p| p.age >= 18).collect();
        let rep = if adults.is_empty() {
            block
                .iter()
                .max_by_key(|p| p.age)
                .expect("blocks are never empty")
        } else {
            adults[company.rng.random_range(0..adults.len())]
        };
        let established = company
            .established
            .max(rep.birth_date + Duration::days(18 * 366));
        let code = COUNTIES[company.county].code.to_string();
        legal.push(&[
            Value::Text(&company.uscc),
            Value::Text(&company.name),
            Value::Text(&rep.id_number),
            Value::Text(vocab::INDUSTRIES[company.industry].0),
            Value::Float(company.registered_capital),
            Value::Date(established.min(crate::population::as_of())),
            Value::Text(&code),
            Value::Text(vocab::STATUSES[company.status]),
        ]);
        let scale = (company.registered_capital / 50.0).clamp(0.2, 400.0);
        let urban = is_urban(&COUNTIES[company.county]);
        for (kind, chance) in [(1, 1.0), (0, 0.9), (2, if urban { 0.35 } else { 0.1 })] {
            if company.status == 0 && company.rng.random_bool(chance) {
                counters.accounts += 1;
                utility_account(
                    &mut utility,
                    &mut company.rng,
                    counters.accounts,
                    &company.uscc,
                    "organisation",
                    kind,
                    scale,
                    &code,
                );
            }
        }
        let first_year = established.year();
        let rate = 0.01 + 0.12 * company.rng.random::<f64>();
        let mut revenue = company.registered_capital * lognormal(&mut company.rng, 1.2, 0.8);
        let last_year = if company.status == 0 {
            DATA_YEAR
        } else {
            DATA_YEAR - company.rng.random_range(0..4)
        };
        for year in first_year.max(DATA_YEAR - 4)..=last_year {
            revenue = round2((revenue * lognormal(&mut company.rng, 1.05, 0.2)).min(99_999.0));
            let paid = round2(revenue * rate * lognormal(&mut company.rng, 1.0, 0.15));
            tax.push(&[
                Value::Text(&company.uscc),
                Value::Int(i64::from(year)),
                Value::Float(revenue),
                Value::Float(paid.min(revenue)),
                Value::Text(&code),
            ]);
        }
    }

    for p in &persons {
        if p.age >= 18 && urng.random_bool(0.38) {
            let urban = is_urban(p.county());
            let code = p.county().code.to_string();
            for (kind, chance) in [(1, 1.0), (0, 0.85), (2, if urban { 0.45 } else { 0.08 })] {
                if urng.random_bool(chance) {
                    counters.accounts += 1;
                    utility_account(
                        &mut utility,
                        &mut urng,
                        counters.accounts,
                        &p.id_number,
                        "person",
                        kind,
                        1.0,
                        &code,
                    );
                }
            }
        }
    }

    let mut insurance = Rows::new("social_insurance");
    let mut irng = rng_for(seed, STREAM_INSURANCE, index);
    for p in &persons {
        let retire = if p.male { 60 } else { 55 };
        if !(18..=retire).contains(&p.age) || !irng.random_bool(0.55) {
            continue;
        }
        let employer = world.company(world.employer(&mut irng));
        let code = COUNTIES[employer.county].code.to_string();
        let first = if irng.random_bool(0.85) {
            1
        } else {
            irng.random_range(2..=12)
        };
        let last = if irng.random_bool(0.9) {
            12
        } else {
            irng.random_range(first..=12)
        };
        let base = round2(lognormal(&mut irng, 5500.0, 0.45).clamp(4_100.0, 22_000.0)).round();
        for month in first..=last {
            let paid = if irng.random_bool(0.02) {
                0.0
            } else {
                round2(base * 0.105)
            };
            insurance.push(&[
                Value::Text(&p.id_number),
                Value::Text(&employer.uscc),
                Value::Text(&month_label(month)),
                Value::Float(base),
                Value::Float(paid),
                Value::Text(&code),
            ]);
        }
    }

    let mut health = Rows::new("health_visits");
    let mut hrng = rng_for(seed, STREAM_HEALTH, index);
    let diagnosis_by_age = [
        Weighted::new([
            12.0, 0.3, 2.0, 1.0, 0.5, 1.0, 4.0, 4.0, 0.3, 40.0, 12.0, 6.0, 1.0, 1.0, 0.0, 8.0, 6.0,
            1.0,
        ]),
        Weighted::new([
            5.0, 1.5, 1.5, 3.0, 4.0, 3.0, 3.0, 2.0, 4.0, 20.0, 12.0, 5.0, 8.0, 7.0, 6.0, 7.0, 6.0,
            2.0,
        ]),
        Weighted::new([
            2.0, 6.0, 1.5, 12.0, 2.0, 5.0, 5.0, 2.0, 25.0, 12.0, 8.0, 2.0, 9.0, 5.0, 0.0, 3.0, 4.0,
            2.0,
        ]),
    ];
    for p in &persons {
        let mean = match p.age {
            0..=4 => 3.0,
            5..=14 => 1.5,
            15..=44 => 1.0,
            45..=64 => 2.0,
            _ => 4.0,
        };
        let group = match p.age {
            0..=14 => 0,
            15..=54 => 1,
            _ => 2,
        };
        for _ in 0..poisson(&mut hrng, mean) {
            let day = NaiveDate::from_ymd_opt(DATA_YEAR, 1, 1).expect("valid date")
                + Duration::days(hrng.random_range(0..365));
            if day < p.birth_date {
                continue;
            }
            let mut diagnosis = diagnosis_by_age[group].sample(&mut hrng);
            if vocab::DIAGNOSES[diagnosis] == "pregnancy" && (p.male || !(16..=45).contains(&p.age))
            {
                diagnosis = vocab::DIAGNOSES
                    .iter()
                    .position(|d| *d == "symptoms")
                    .unwrap_or(0);
            }
            let county = p.county();
            let roll: f64 = hrng.random();
            let (hospital, code) = if roll < 0.15 {
                let (name, code) =
                    PROVINCIAL_HOSPITALS[hrng.random_range(0..PROVINCIAL_HOSPITALS.len())];
                (name.to_owned(), code.to_owned())
            } else {
                let kind = match roll {
                    r if r < 0.80 => "人民医院",
                    r if r < 0.92 => "中医医院",
                    _ => "妇幼保健院",
                };
                (format!("{}{kind}", county.name), county.code.to_string())
            };
            let inpatient = hrng.random_bool(if vocab::DIAGNOSES[diagnosis] == "neoplasms" {
                0.5
            } else {
                0.08
            });
            let cost = if inpatient {
                lognormal(&mut hrng, 7000.0, 0.8)
            } else {
                lognormal(&mut hrng, 180.0, 0.9)
            };
            health.push(&[
                Value::Text(&p.id_number),
                Value::Date(day),
                Value::Text(&hospital),
                Value::Text(vocab::DIAGNOSES[diagnosis]),
                Value::Float(round2(cost.min(500_000.0))),
                Value::Text(&code),
            ]);
        }
    }

    for (writer, mut rows) in writers
        .iter()
        .zip([population, legal, utility, insurance, tax, health])
    {
        if !rows.is_empty() {
            writer.send(rows.finish()?)?;
        }
    }
    Ok(())
}

/// Twelve months of one account: usage with a seasonal swing, the bill, and
/// arrears that build up for the few accounts that stop paying.
#[allow(clippy::too_many_arguments)]
fn utility_account(
    rows: &mut Rows,
    rng: &mut crate::sample::DataRng,
    account: u64,
    subject: &str,
    subject_type: &str,
    kind: usize,
    scale: f64,
    county_code: &str,
) {
    let utility = vocab::UTILITIES[kind];
    let business = subject_type == "organisation";
    let (median, price) = match (kind, business) {
        (0, false) => (9.0, 3.45),
        (0, true) => (40.0, 5.0),
        (1, false) => (160.0, 0.45),
        (1, true) => (900.0, 0.65),
        (_, false) => (14.0, 2.98),
        (_, true) => (80.0, 3.5),
    };
    let base = lognormal(rng, median * scale, 0.5);
    let delinquent = rng.random_bool(0.04);
    let id = format!("{}{county_code}{account:09}", ["W", "P", "G"][kind]);
    let mut arrears = 0.0;
    for month in 1..=12u32 {
        let season = 1.0 + 0.18 * ((f64::from(month) - 1.0) * std::f64::consts::TAU / 12.0).cos();
        let usage = round2((base * season * lognormal(rng, 1.0, 0.12)).min(1e7));
        let billed = round2(usage * price);
        if delinquent && rng.random_bool(0.6) {
            arrears = round2(arrears + billed);
        } else {
            arrears = 0.0;
        }
        rows.push(&[
            Value::Text(&id),
            Value::Text(subject),
            Value::Text(subject_type),
            Value::Text(utility),
            Value::Text(&month_label(month)),
            Value::Float(usage),
            Value::Float(billed),
            Value::Float(arrears),
            Value::Text(county_code),
        ]);
    }
}

fn month_label(month: u32) -> String {
    format!("{DATA_YEAR}-{month:02}")
}

/// A table's Parquet writer on its own thread. The file is written under a
/// temporary name and renamed when complete, so a crash never leaves a
/// truncated file under the real name.
struct Writer {
    sender: SyncSender<RecordBatch>,
    handle: JoinHandle<Result<TableSummary, GenerateError>>,
}

impl Writer {
    fn spawn(out: &Path, table: &'static str) -> Result<Writer, GenerateError> {
        let final_path = out.join(format!("{table}.parquet"));
        let partial: PathBuf = out.join(format!(".{table}.parquet.partial"));
        let file = File::create(&partial)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .build();
        let mut writer = ArrowWriter::try_new(file, crate::tables::schema(table), Some(props))?;
        let (sender, receiver) = sync_channel::<RecordBatch>(2);
        let handle = std::thread::Builder::new()
            .name(format!("write-{table}"))
            .spawn(move || {
                let mut rows = 0u64;
                for batch in receiver {
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                writer.close()?;
                fs::rename(&partial, &final_path)?;
                let bytes = fs::metadata(&final_path)?.len();
                Ok(TableSummary {
                    name: table,
                    rows,
                    bytes,
                })
            })?;
        Ok(Writer { sender, handle })
    }

    fn send(&self, batch: RecordBatch) -> Result<(), GenerateError> {
        // A closed channel means the writer failed; `finish` reports why.
        self.sender
            .send(batch)
            .map_err(|_| GenerateError::WriterStopped)
    }

    fn finish(self) -> Result<TableSummary, GenerateError> {
        drop(self.sender);
        self.handle
            .join()
            .map_err(|_| GenerateError::WriterStopped)?
    }
}
