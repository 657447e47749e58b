//! Unified social credit codes, GB 32100-2015, with the organisation code of
//! GB 11714 inside.
//!
//! 18 characters from the 31-character set `0123456789ABCDEFGHJKLMNPQRTUWXY`
//! (I, O, S, V and Z are never used; a character's value is its index):
//! position 1 the registration authority, 2 the organisation type, 3-8 the
//! administrative division code, 9-17 the organisation code (8 characters and
//! its own GB 11714 check: weights 3 7 9 10 5 8 4 2 with A=10 .. Z=35,
//! `c = 11 - sum mod 11`, 10 -> X, 11 -> 0), and 18 the check character:
//! weights `3^(i-1) mod 31`, `c = 31 - sum mod 31`, 31 -> 0. The weights are
//! non-zero modulo the prime 31, so every single-character substitution within
//! the alphabet is caught by the final check.

use super::IdentifierError;

const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// A valid unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CreditCode {
    text: String,
}

impl CreditCode {
    pub fn parse(text: &str) -> Result<Self, IdentifierError> {
        if text.chars().count() != 18 {
            return Err(IdentifierError::Length);
        }
        let mut values = [0u32; 18];
        for (i, c) in text.chars().enumerate() {
            values[i] = alphabet_value(c).ok_or(IdentifierError::Character { position: i + 1 })?;
        }
        let bytes = text.as_bytes();
        if !bytes[2..8].iter().all(u8::is_ascii_digit) {
            let position = bytes[2..8]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(0)
                + 3;
            return Err(IdentifierError::Character { position });
        }
        if org_check_char(&bytes[8..16]) != bytes[16] {
            return Err(IdentifierError::OrganisationCheck);
        }
        if check_char(&values[..17]) != bytes[17] {
            return Err(IdentifierError::Check);
        }
        Ok(CreditCode {
            text: text.to_owned(),
        })
    }

    /// Builds a code from its parts. `organisation` is the 8-character body of
    /// the organisation code (digits and letters of the code alphabet);
    /// both check characters are computed.
    pub fn generate(
        authority: char,
        org_type: char,
        division_code: u32,
        organisation: &str,
    ) -> Result<Self, IdentifierError> {
        let org = organisation.as_bytes();
        if org.len() != 8 {
            return Err(IdentifierError::Length);
        }
        let org_check = org_check_char(org) as char;
        let body = format!(
            "{authority}{org_type}{:06}{organisation}{org_check}",
            division_code % 1_000_000
        );
        let mut values = [0u32; 17];
        for (i, c) in body.chars().enumerate().take(17) {
            values[i] = alphabet_value(c).ok_or(IdentifierError::Character { position: i + 1 })?;
        }
        let check = check_char(&values) as char;
        Self::parse(&format!("{body}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The administrative division code of the registering authority.
    pub fn division_code(&self) -> u32 {
        self.text[2..8].parse().unwrap_or(0)
    }
}

/// Encodes `n` as 8 characters of the code alphabet (base 31), so distinct
/// numbers below 31^8 give distinct organisation-code bodies.
pub fn organisation_body(mut n: u64) -> String {
    let mut out = [b'0'; 8];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 31) as usize];
        n /= 31;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn alphabet_value(c: char) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == c)
        .map(|p| p as u32)
}

fn check_char(values: &[u32]) -> u8 {
    let sum: u32 = values.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    ALPHABET[((31 - sum % 31) % 31) as usize]
}

/// GB 11714: digits are their value, letters A=10 .. Z=35.
fn org_check_char(body: &[u8]) -> u8 {
    let value = |b: u8| match b {
        b'0'..=b'9' => u32::from(b - b'0'),
        b'A'..=b'Z' => u32::from(b - b'A') + 10,
        _ => 0,
    };
    let sum: u32 = body
        .iter()
        .zip(ORG_WEIGHTS)
        .map(|(&b, w)| value(b) * w)
        .sum();
    match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        c => b'0' + c as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "91110000600037341L";

    #[test]
    fn public_example_is_valid() {
        let code = CreditCode::parse(VALID).unwrap();
        assert_eq!(code.as_str(), VALID);
        assert_eq!(code.division_code(), 110000);
    }

    #[test]
    fn every_single_character_change_fails() {
        let mut alphabet: Vec<char> = ALPHABET.iter().map(|&b| char::from(b)).collect();
        alphabet.extend(['I', 'O', 'S', 'V', 'Z', 'l', ' ', '０', '号']);
        let generated =
            CreditCode::generate('9', '1', 530102, &organisation_body(123_456)).unwrap();
        for text in [VALID, generated.as_str()] {
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
                        CreditCode::parse(&changed).is_err(),
                        "{changed} should be invalid"
                    );
                }
            }
        }
    }

    #[test]
    fn generated_codes_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..5_000u64 {
            let code =
                CreditCode::generate('9', '1', 530102, &organisation_body(n * 7919)).unwrap();
            assert_eq!(code.division_code(), 530102);
            assert!(seen.insert(code.as_str().to_owned()));
        }
    }

    #[test]
    fn organisation_check_is_enforced_separately() {
        // Change the organisation-code check (position 17) and recompute the
        // final check so only the inner GB 11714 check can catch it.
        let mut values = [0u32; 17];
        let mut chars: Vec<char> = VALID.chars().collect();
        chars[16] = '2';
        for (i, c) in chars.iter().take(17).enumerate() {
            values[i] = alphabet_value(*c).unwrap();
        }
        chars[17] = char::from(check_char(&values));
        let text: String = chars.into_iter().collect();
        assert_eq!(
            CreditCode::parse(&text),
            Err(IdentifierError::OrganisationCheck)
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(CreditCode::parse(""), Err(IdentifierError::Length));
        assert_eq!(
            CreditCode::parse("91110000600037341"),
            Err(IdentifierError::Length)
        );
        assert_eq!(
            CreditCode::parse("9111000060003734IL"),
            Err(IdentifierError::Character { position: 17 })
        );
        assert!(CreditCode::parse("一一一一一一一一一一一一一一一一一一").is_err());
        assert_eq!(
            CreditCode::parse("91A10000600037341L"),
            Err(IdentifierError::Character { position: 3 })
        );
    }
}
