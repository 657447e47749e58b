//! `veil calendar`: working-day arithmetic on the State Council's calendar.

use chrono::NaiveDate;
use clap::Subcommand;
use veil_policies::calendar;

use super::Failure;

#[derive(Subcommand)]
pub enum CalendarCommand {
    /// The DAYS-th working day after FROM (FROM itself does not count).
    Deadline {
        /// The start date, YYYY-MM-DD.
        #[arg(long)]
        from: NaiveDate,
        /// Working days to count.
        #[arg(long)]
        days: u32,
    },
}

pub fn run(cmd: CalendarCommand) -> Result<(), Failure> {
    match cmd {
        CalendarCommand::Deadline { from, days } => {
            let d = calendar::add_working_days(from, days);
            println!("{}", d.date);
            if !d.assumed_years.is_empty() {
                let years: Vec<String> = d.assumed_years.iter().map(i32::to_string).collect();
                eprintln!(
                    "veil: no published arrangement for {}: Monday to Friday assumed there",
                    years.join(", ")
                );
            }
            Ok(())
        }
    }
}
