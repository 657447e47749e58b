//! Citizen identity numbers, GB 11643-1999.
//!
//! Layout: 6-digit address code, 8-digit birth date (YYYYMMDD), 3-digit
//! sequence whose last digit is odd for men and even for women, and a check
//! character by ISO 7064 MOD 11-2: with weights `w_i = 2^(17-i) mod 11`
//! (7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2), `Y = sum(d_i * w_i) mod 11` and the
//! check is `"10X98765432"[Y]`. Every weight is non-zero modulo the prime 11,
//! so every single-character substitution changes `Y` and is detected.

use chrono::NaiveDate;

use super::IdentifierError;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// Two-digit province codes of GB/T 2260 (mainland, Taiwan, Hong Kong, Macao).
const PROVINCES: [u32; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

/// Earliest birth year accepted. The standard's own example is born in 1880.
const EARLIEST_YEAR: i32 = 1850;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    Male,
    Female,
}

/// A valid citizen identity number and its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CitizenId {
    text: String,
    address_code: u32,
    birth_date: NaiveDate,
    sequence: u16,
}

impl CitizenId {
    /// Validates `text` strictly: 17 ASCII digits and a check digit or an
    /// upper-case `X`. Normalising user input (spaces, full-width digits,
    /// lower-case x) is the caller's business.
    pub fn parse(text: &str) -> Result<Self, IdentifierError> {
        let bytes = text.as_bytes();
        if text.chars().count() != 18 {
            return Err(IdentifierError::Length);
        }
        if bytes.len() != 18 {
            // 18 characters but not all ASCII: find the first offender.
            let position = text
                .chars()
                .position(|c| !c.is_ascii())
                .map_or(1, |p| p + 1);
            return Err(IdentifierError::Character { position });
        }
        for (i, &b) in bytes[..17].iter().enumerate() {
            if !b.is_ascii_digit() {
                return Err(IdentifierError::Character { position: i + 1 });
            }
        }
        if !(bytes[17].is_ascii_digit() || bytes[17] == b'X') {
            return Err(IdentifierError::Character { position: 18 });
        }
        let digits = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
        };
        let address_code = digits(0..6);
        if !PROVINCES.contains(&(address_code / 10_000)) {
            return Err(IdentifierError::Province);
        }
        let year = digits(6..10) as i32;
        let birth_date = NaiveDate::from_ymd_opt(year, digits(10..12), digits(12..14))
            .filter(|_| year >= EARLIEST_YEAR)
            .ok_or(IdentifierError::BirthDate)?;
        if bytes[17] != check_char(&bytes[..17]) {
            return Err(IdentifierError::Check);
        }
        Ok(CitizenId {
            text: text.to_owned(),
            address_code,
            birth_date,
            sequence: digits(14..17) as u16,
        })
    }

    /// Like [`CitizenId::parse`], and also refuses a birth date after `today`.
    pub fn parse_as_of(text: &str, today: NaiveDate) -> Result<Self, IdentifierError> {
        let id = Self::parse(text)?;
        if id.birth_date > today {
            return Err(IdentifierError::FutureBirthDate);
        }
        Ok(id)
    }

    /// Builds the number for the given parts, computing the check character.
    /// The sequence is taken modulo 1000; its parity is the caller's choice of
    /// sex.
    pub fn generate(
        address_code: u32,
        birth_date: NaiveDate,
        sequence: u16,
    ) -> Result<Self, IdentifierError> {
        use chrono::Datelike;
        let body = format!(
            "{:06}{:04}{:02}{:02}{:03}",
            address_code % 1_000_000,
            birth_date.year(),
            birth_date.month(),
            birth_date.day(),
            sequence % 1000
        );
        if body.len() != 17 {
            return Err(IdentifierError::BirthDate);
        }
        let check = check_char(body.as_bytes()) as char;
        Self::parse(&format!("{body}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The address code at registration; it may be a code no longer in use.
    pub fn address_code(&self) -> u32 {
        self.address_code
    }

    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }

    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    pub fn sex(&self) -> Sex {
        if self.sequence % 2 == 1 {
            Sex::Male
        } else {
            Sex::Female
        }
    }
}

/// The ISO 7064 MOD 11-2 check character of 17 ASCII digits.
fn check_char(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: [&str; 3] = [
        "11010519491231002X",
        "440524188001010014",
        "34052419800101001X",
    ];

    #[test]
    fn public_examples_are_valid() {
        for text in VALID {
            let id = CitizenId::parse(text).unwrap();
            assert_eq!(id.as_str(), text);
        }
        let id = CitizenId::parse("11010519491231002X").unwrap();
        assert_eq!(id.address_code(), 110105);
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(
            CitizenId::parse("440524188001010014").unwrap().sex(),
            Sex::Male
        );
    }

    #[test]
    fn every_single_character_change_fails() {
        let alphabet: Vec<char> = "0123456789XxA -０一".chars().collect();
        for text in VALID {
            let chars: Vec<char> = text.chars().collect();
            for position in 0..chars.len() {
                for &c in &alphabet {
                    if c == chars[position] {
                        continue;
                    }
                    let mut changed = chars.clone();
                    changed[position] = c;
                    let changed: String = changed.into_iter().collect();
                    assert!(
                        CitizenId::parse(&changed).is_err(),
                        "{changed} should be invalid"
                    );
                }
            }
        }
    }

    #[test]
    fn dates_that_do_not_exist_fail() {
        for date in [
            "19490230", "20230229", "19000229", "19491301", "19490001", "19491200",
        ] {
            let body = format!("110105{date}002");
            let check = check_char(body.as_bytes()) as char;
            let text = format!("{body}{check}");
            assert_eq!(
                CitizenId::parse(&text),
                Err(IdentifierError::BirthDate),
                "{text}"
            );
        }
        // 2000 is a leap year, 1900 is not.
        let leap = CitizenId::generate(530102, NaiveDate::from_ymd_opt(2000, 2, 29).unwrap(), 11);
        assert!(leap.is_ok());
    }

    #[test]
    fn future_birth_dates_fail_as_of_a_day() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let tomorrow = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let id = CitizenId::generate(530102, tomorrow, 1).unwrap();
        assert_eq!(
            CitizenId::parse_as_of(id.as_str(), today),
            Err(IdentifierError::FutureBirthDate)
        );
        assert!(CitizenId::parse_as_of(id.as_str(), tomorrow).is_ok());
    }

    #[test]
    fn generate_round_trips_and_encodes_sex() {
        let date = NaiveDate::from_ymd_opt(1987, 6, 5).unwrap();
        let man = CitizenId::generate(530102, date, 123).unwrap();
        assert_eq!(man.address_code(), 530102);
        assert_eq!(man.birth_date(), date);
        assert_eq!(man.sequence(), 123);
        assert_eq!(man.sex(), Sex::Male);
        assert_eq!(
            CitizenId::generate(530102, date, 124).unwrap().sex(),
            Sex::Female
        );
    }

    #[test]
    fn malformed_input_is_refused_with_a_rule_not_the_value() {
        assert_eq!(CitizenId::parse(""), Err(IdentifierError::Length));
        assert_eq!(
            CitizenId::parse("11010519491231002"),
            Err(IdentifierError::Length)
        );
        assert_eq!(
            CitizenId::parse("11010519491231002x"),
            Err(IdentifierError::Character { position: 18 })
        );
        assert_eq!(
            CitizenId::parse("99010519491231002X"),
            Err(IdentifierError::Province)
        );
        let err = CitizenId::parse("11010519491231002Y")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("110105"));
        // Non-ASCII input of the right character count must not panic.
        assert!(CitizenId::parse("一一一一一一一一一一一一一一一一一一").is_err());
    }
}
