//! Masks on text. Each keeps the shape a reader needs (length, family name,
//! region) and hides the rest. Input that does not have the expected shape is
//! hidden entirely: a mask never reveals more of a malformed value than of a
//! well-formed one.

const STAR: char = '*';

fn stars(n: usize) -> String {
    std::iter::repeat_n(STAR, n).collect()
}

fn push_stars(out: &mut String, n: usize) {
    const STARS: &str = "********************************";
    let mut left = n;
    while left > 0 {
        let take = left.min(STARS.len());
        out.push_str(&STARS[..take]);
        left -= take;
    }
}

/// Keeps the first `head` and last `tail` characters when the value has at
/// least `min` characters; otherwise hides every character. Writes into
/// `out`, so a column is masked without an allocation per value.
pub fn keep_ends_into(value: &str, head: usize, tail: usize, min: usize, out: &mut String) {
    if value.is_ascii() {
        let n = value.len();
        if n < min.max(head + tail + 1) {
            push_stars(out, n);
        } else {
            out.push_str(&value[..head]);
            push_stars(out, n - head - tail);
            out.push_str(&value[n - tail..]);
        }
        return;
    }
    let n = value.chars().count();
    if n < min.max(head + tail + 1) {
        push_stars(out, n);
        return;
    }
    out.extend(value.chars().take(head));
    push_stars(out, n - head - tail);
    out.extend(value.chars().skip(n - tail));
}

fn keep_ends(value: &str, head: usize, tail: usize, min: usize) -> String {
    let mut out = String::with_capacity(value.len());
    keep_ends_into(value, head, tail, min, &mut out);
    out
}

/// `530102199001011234` -> `5301**********1234`: the prefecture and the last
/// four characters, as commonly printed on receipts.
pub fn id_number(value: &str) -> String {
    keep_ends(value, 4, 4, 15)
}

/// `13812345678` -> `138****5678`.
pub fn phone(value: &str) -> String {
    keep_ends(value, 3, 4, 11)
}

/// Two-character family names; every other name keeps one character.
const COMPOUND_SURNAMES: [&str; 12] = [
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
];

/// `张三丰` -> `张**`: the family name and one star per other character.
/// A one-character name is hidden entirely.
pub fn name(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    name_into(value, &mut out);
    out
}

pub fn name_into(value: &str, out: &mut String) {
    let n = value.chars().count();
    if n <= 1 {
        push_stars(out, n);
        return;
    }
    let family = if n > 2 && COMPOUND_SURNAMES.iter().any(|s| value.starts_with(s)) {
        2
    } else {
        1
    };
    out.extend(value.chars().take(family));
    push_stars(out, n - family);
}

/// `云南省昆明市五华区人民路1号` -> `云南省昆明市五华区***`: the address down to
/// its county-level division. Without a recognisable division, `***`.
pub fn address(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    address_into(value, &mut out);
    out
}

/// The UTF-8 bytes of a character from U+0800 to U+FFFF.
const fn utf8(c: char) -> [u8; 3] {
    let c = c as u32;
    [
        0xe0 | (c >> 12) as u8,
        0x80 | ((c >> 6) & 0x3f) as u8,
        0x80 | (c & 0x3f) as u8,
    ]
}

const PREFECTURE_ENDS: [[u8; 3]; 3] = [utf8('市'), utf8('州'), utf8('盟')];
const COUNTY_ENDS: [[u8; 3]; 4] = [utf8('区'), utf8('县'), utf8('市'), utf8('旗')];

pub fn address_into(value: &str, out: &mut String) {
    // Byte offsets just after the first character among `ends`, searching
    // `limit` characters from byte offset `from`. Every end is a three-byte
    // character, so characters are stepped over by their lead byte and only
    // three-byte ones are compared, without decoding.
    let bytes = value.as_bytes();
    let find = |from: usize, limit: usize, ends: &[[u8; 3]]| {
        let mut at = from;
        for _ in 0..limit {
            let &lead = bytes.get(at)?;
            let width = match lead {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            if width == 3
                && let Some(b) = bytes.get(at..at + 3)
                && ends.iter().any(|e| e.as_slice() == b)
            {
                return Some(at + 3);
            }
            at += width;
        }
        None
    };
    // Province (省, or an autonomous region 自治区), then prefecture, then county.
    let after_province = find(0, 8, &[utf8('省')]).or_else(|| {
        let head_end = value.char_indices().nth(12).map_or(value.len(), |(i, _)| i);
        value[..head_end].find("自治区").map(|b| b + "自治区".len())
    });
    let start = after_province.unwrap_or(0);
    let county = find(start, 12, &PREFECTURE_ENDS).and_then(|p| find(p, 12, &COUNTY_ENDS));
    if let Some(end) = county {
        out.push_str(&value[..end]);
    }
    out.push_str("***");
}

/// `91530102MA6K1234X5` -> `91530102**********`: registration authority,
/// organisation type and division code are public; the rest is hidden.
pub fn credit_code(value: &str) -> String {
    let n = value.chars().count();
    if n != 18 {
        return stars(n);
    }
    let mut out: String = value.chars().take(8).collect();
    out.push_str(&stars(10));
    out
}

/// Hides everything, including the length.
pub fn redact(_value: &str) -> String {
    "****".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers() {
        assert_eq!(id_number("11010519491231002X"), "1101**********002X");
        assert_eq!(id_number("110105491231002"), "1101*******1002"); // 15-digit old form
        assert_eq!(id_number(""), "");
        assert_eq!(id_number("12345"), "*****");
        assert_eq!(
            id_number("一二三四五六七八九十一二三四五六七八"),
            "一二三四**********五六七八"
        );
    }

    #[test]
    fn phones() {
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(phone("138123"), "******");
        assert_eq!(phone(""), "");
        assert_eq!(phone("+8613812345678"), "+86*******5678");
        assert_eq!(phone("一三八一二三四五六七八"), "一三八****五六七八");
    }

    #[test]
    fn names() {
        assert_eq!(name("张三丰"), "张**");
        assert_eq!(name("李娜"), "李*");
        assert_eq!(name("欧阳修"), "欧阳*");
        assert_eq!(name("欧阳"), "欧*");
        assert_eq!(name("王"), "*");
        assert_eq!(name(""), "");
        assert_eq!(name("Smith"), "S****");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address("云南省昆明市五华区人民路12号3栋"),
            "云南省昆明市五华区***"
        );
        assert_eq!(
            address("云南省德宏傣族景颇族自治州芒市团结路1号"),
            "云南省德宏傣族景颇族自治州芒市***"
        );
        assert_eq!(
            address("云南省楚雄彝族自治州武定县大河村3组5号"),
            "云南省楚雄彝族自治州武定县***"
        );
        assert_eq!(
            address("广西壮族自治区南宁市兴宁区民主路1号"),
            "广西壮族自治区南宁市兴宁区***"
        );
        assert_eq!(address("12 Main Street"), "***");
        assert_eq!(address(""), "***");
        assert_eq!(address("云南省"), "***");
    }

    #[test]
    fn credit_codes() {
        assert_eq!(credit_code("91110000600037341L"), "91110000**********");
        assert_eq!(credit_code("9111"), "****");
        assert_eq!(credit_code(""), "");
    }

    #[test]
    fn redaction_hides_length() {
        assert_eq!(redact("P530102000000001"), "****");
        assert_eq!(redact(""), "****");
    }
}
