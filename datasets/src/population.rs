//! The synthetic population: persons drawn chunk by chunk, companies as pure
//! functions of their index, so every table can cite any company's credit
//! code and every cited person exists.

use chrono::{Datelike, Duration, NaiveDate};
use rand::RngExt;
use veil_policies::identifiers::{CitizenId, CreditCode, organisation_body};

use crate::regions::{self, COUNTIES, County, OLD_CODES, OUT_OF_PROVINCE};
use crate::sample::{DataRng, Weighted, lognormal, rng_for};
use crate::vocab;

/// Data is as of the end of this year; monthly tables cover it.
pub const DATA_YEAR: i32 = 2025;
/// Persons per company: one company is founded per block of this many.
pub const PERSONS_PER_COMPANY: u64 = 20;

const STREAM_COMPANY: u64 = 2;

/// Age pyramid of Yunnan, 5-year bands from 0 to 100 (percent).
const AGE_BANDS: [f64; 20] = [
    5.2, 6.3, 6.6, 6.0, 5.3, 6.0, 8.0, 7.8, 7.0, 8.2, 8.5, 7.0, 5.5, 5.0, 3.6, 2.2, 1.2, 0.5, 0.12,
    0.03,
];

pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(DATA_YEAR, 12, 31).expect("valid date")
}

/// The first day a birth can fall on: 100 years and a bit before `as_of`.
fn first_birth_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(DATA_YEAR - 101, 1, 1).expect("valid date")
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id_number: String,
    pub name: String,
    pub male: bool,
    pub birth_date: NaiveDate,
    pub age: u32,
    pub county: usize,
    pub ethnicity: &'static str,
    pub address: String,
    pub phone: Option<String>,
    pub education: &'static str,
    pub marital_status: &'static str,
}

impl Person {
    pub fn county(&self) -> &'static County {
        &COUNTIES[self.county]
    }
}

/// Everything that must stay the same across chunks: the sampling tables and
/// the per-(address code, birth date, sex) sequence counters that keep
/// identity numbers unique.
pub struct World {
    pub seed: u64,
    pub companies: u64,
    county_pick: Weighted,
    age_pick: Weighted,
    surname_pick: Weighted,
    given_pick: Weighted,
    ethnicity_by_prefecture: Vec<(u32, Weighted)>,
    industry_pick: Weighted,
    /// Address codes an identity number can carry: current counties, then
    /// old codes, then out-of-province codes.
    address_codes: Vec<u32>,
    sequences: Vec<u16>,
    days: usize,
}

impl World {
    pub fn new(seed: u64, persons: u64) -> World {
        let address_codes: Vec<u32> = COUNTIES
            .iter()
            .map(|c| c.code)
            .chain(OLD_CODES.iter().map(|o| o.0))
            .chain(OUT_OF_PROVINCE)
            .collect();
        let days = (as_of() - first_birth_day()).num_days() as usize + 1;
        let ethnicity_by_prefecture = regions::PREFECTURES
            .iter()
            .map(|p| {
                let weights = vocab::ETHNICITIES.iter().map(|(_, share, places)| {
                    if places.contains(&p.code) {
                        share * 6.0
                    } else {
                        *share
                    }
                });
                (p.code, Weighted::new(weights))
            })
            .collect();
        World {
            seed,
            companies: persons.div_ceil(PERSONS_PER_COMPANY),
            county_pick: Weighted::new(regions::county_weights()),
            age_pick: Weighted::new(AGE_BANDS),
            surname_pick: Weighted::new(vocab::SURNAMES.iter().map(|s| s.1)),
            // Zipf-like: the common characters repeat, as real names do.
            given_pick: Weighted::new((0..vocab::MALE_CHARS.len()).map(|i| 1.0 / (i as f64 + 2.0))),
            ethnicity_by_prefecture,
            industry_pick: Weighted::new(vocab::INDUSTRIES.iter().map(|i| i.2)),
            sequences: vec![0; address_codes.len() * days * 2],
            address_codes,
            days,
        }
    }

    /// Draws the next person. Identity numbers are unique by construction:
    /// the sequence is a counter per (address code, birth date, sex).
    pub fn person(&mut self, rng: &mut DataRng) -> Person {
        let county = self.county_pick.sample(rng);
        let band = self.age_pick.sample(rng) as i64;
        let days_back = band * 1826 + rng.random_range(0..1826);
        let mut birth_date = as_of() - Duration::days(days_back);
        let male = rng.random_bool(0.515);

        let here = COUNTIES[county].code;
        let roll: f64 = rng.random();
        let mut slot = if roll < 0.85 {
            county
        } else if roll < 0.92 {
            self.county_pick.sample(rng)
        } else if roll < 0.97 {
            // Someone registered before their county was renamed.
            match OLD_CODES.iter().position(|o| o.1 == here) {
                Some(i) => COUNTIES.len() + i,
                None => county,
            }
        } else {
            COUNTIES.len() + OLD_CODES.len() + rng.random_range(0..OUT_OF_PROVINCE.len())
        };
        let old_code = (COUNTIES.len()..COUNTIES.len() + OLD_CODES.len()).contains(&slot);
        if old_code && birth_date.year() >= 2010 {
            slot = county; // the old codes were retired before then
        } else if slot >= COUNTIES.len() + OLD_CODES.len() && birth_date.year() > DATA_YEAR - 18 {
            slot = county; // children are registered where they live
        }
        let id = loop {
            let day = (birth_date - first_birth_day()).num_days() as usize;
            let index = (slot * self.days + day) * 2 + usize::from(male);
            let count = self.sequences[index];
            // Men take odd sequences 1..999, women even ones 2..998.
            if count < 499 {
                self.sequences[index] = count + 1;
                let sequence = 2 * count + if male { 1 } else { 2 };
                break CitizenId::generate(self.address_codes[slot], birth_date, sequence)
                    .expect("generated identity numbers are valid");
            }
            birth_date -= Duration::days(1);
        };
        let age = age_on(birth_date, as_of());
        let prefecture = COUNTIES[county].code / 100 * 100;
        let ethnicity_pick = &self
            .ethnicity_by_prefecture
            .iter()
            .find(|(code, _)| *code == prefecture)
            .expect("every county has a prefecture")
            .1;
        Person {
            name: self.name(rng, male),
            id_number: id.as_str().to_owned(),
            male,
            birth_date,
            age,
            county,
            ethnicity: vocab::ETHNICITIES[ethnicity_pick.sample(rng)].0,
            address: address(rng, &COUNTIES[county]),
            phone: (age >= 12).then(|| phone(rng)),
            education: education(rng, age, birth_date.year()),
            marital_status: marital(rng, age),
        }
    }

    fn name(&self, rng: &mut DataRng, male: bool) -> String {
        let mut name = String::from(vocab::SURNAMES[self.surname_pick.sample(rng)].0);
        let chars = if male {
            &vocab::MALE_CHARS
        } else {
            &vocab::FEMALE_CHARS
        };
        name.push_str(chars[self.given_pick.sample(rng)]);
        if rng.random_bool(0.72) {
            name.push_str(chars[self.given_pick.sample(rng)]);
        }
        name
    }

    /// Company `j`: its attributes depend on (seed, j) only.
    pub fn company(&self, j: u64) -> Company {
        let mut rng = rng_for(self.seed, STREAM_COMPANY, j);
        let county = self.county_pick.sample(&mut rng);
        let sole_trader = rng.random_bool(0.3);
        // An affine bijection modulo 31^8 scatters the organisation codes.
        let body = organisation_body((j.wrapping_mul(2_654_435_761) + 104_729) % 852_891_037_441);
        let uscc = CreditCode::generate(
            '9',
            if sole_trader { '2' } else { '1' },
            COUNTIES[county].code,
            &body,
        )
        .expect("generated credit codes are valid");
        let industry = self.industry_pick.sample(&mut rng);
        let size = lognormal(&mut rng, if sole_trader { 5.0 } else { 100.0 }, 1.4);
        let established = NaiveDate::from_ymd_opt(1995, 1, 1).expect("valid date")
            + Duration::days(rng.random_range(0..(31 * 365)));
        let status = match rng.random::<f64>() {
            x if x < 0.85 => 0,
            x if x < 0.90 => 1,
            _ => 2,
        };
        let word = vocab::COMPANY_WORDS[rng.random_range(0..vocab::COMPANY_WORDS.len())];
        let county_short: String = COUNTIES[county].name.chars().take(2).collect();
        let suffix = if sole_trader {
            "经营部"
        } else {
            "有限公司"
        };
        let name = format!(
            "{county_short}{word}{}{suffix}{}",
            vocab::INDUSTRIES[industry].1,
            j % 997
        );
        Company {
            uscc: uscc.as_str().to_owned(),
            name,
            county,
            industry,
            registered_capital: crate::sample::round2(size.min(99_999.0)),
            established,
            status,
            rng,
        }
    }

    /// An employer drawn with a heavy head: a few large employers, many small.
    pub fn employer(&self, rng: &mut DataRng) -> u64 {
        let u: f64 = rng.random();
        ((u * u * u) * self.companies as f64) as u64 % self.companies.max(1)
    }
}

pub struct Company {
    pub uscc: String,
    pub name: String,
    pub county: usize,
    pub industry: usize,
    /// In 10,000 yuan.
    pub registered_capital: f64,
    pub established: NaiveDate,
    /// Index into `vocab::STATUSES`.
    pub status: usize,
    /// The company's own stream, for the tables that continue its story.
    pub rng: DataRng,
}

pub fn age_on(birth: NaiveDate, day: NaiveDate) -> u32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0) as u32
}

fn address(rng: &mut DataRng, county: &County) -> String {
    let prefecture = regions::prefecture_of(county.code).name;
    if regions::is_urban(county) || rng.random_bool(0.35) {
        let street = vocab::STREETS[rng.random_range(0..vocab::STREETS.len())];
        format!(
            "云南省{prefecture}{}{street}{}号{}栋{}单元{}室",
            county.name,
            rng.random_range(1..400),
            rng.random_range(1..30),
            rng.random_range(1..6),
            rng.random_range(1..30) * 100 + rng.random_range(1..5)
        )
    } else {
        let parts = &vocab::VILLAGE_PARTS;
        format!(
            "云南省{prefecture}{}{}{}村{}组{}号",
            county.name,
            parts[rng.random_range(0..parts.len())],
            parts[rng.random_range(0..parts.len())],
            rng.random_range(1..15),
            rng.random_range(1..120)
        )
    }
}

fn phone(rng: &mut DataRng) -> String {
    let prefix = vocab::MOBILE_PREFIXES[rng.random_range(0..vocab::MOBILE_PREFIXES.len())];
    format!("{prefix}{:08}", rng.random_range(0..100_000_000u32))
}

fn education(rng: &mut DataRng, age: u32, birth_year: i32) -> &'static str {
    let e = &vocab::EDUCATION;
    match age {
        0..=5 => e[0],
        6..=11 => e[1],
        12..=14 => e[2],
        15..=17 => e[3],
        _ => {
            let weights: [f64; 7] = match (age, birth_year) {
                (18..=21, _) => [0.5, 4.0, 25.0, 40.0, 18.0, 12.5, 0.0],
                (_, ..1960) => [25.0, 40.0, 22.0, 9.0, 2.0, 1.8, 0.2],
                (_, 1960..1980) => [8.0, 30.0, 35.0, 15.0, 6.0, 5.5, 0.5],
                (_, 1980..1995) => [2.0, 15.0, 38.0, 20.0, 12.0, 11.0, 2.0],
                _ => [0.5, 5.0, 25.0, 25.0, 20.0, 21.0, 3.5],
            };
            e[Weighted::new(weights).sample(rng)]
        }
    }
}

fn marital(rng: &mut DataRng, age: u32) -> &'static str {
    let weights: [f64; 4] = match age {
        0..=19 => return vocab::MARITAL[0],
        20..=24 => [75.0, 24.0, 1.0, 0.0],
        25..=29 => [40.0, 57.0, 3.0, 0.0],
        30..=49 => [8.0, 85.0, 6.0, 1.0],
        50..=64 => [3.0, 86.0, 6.0, 5.0],
        _ => [2.0, 70.0, 3.0, 25.0],
    };
    vocab::MARITAL[Weighted::new(weights).sample(rng)]
}
