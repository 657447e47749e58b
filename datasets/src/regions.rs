//! Yunnan's administrative divisions (GB/T 2260), with rough population
//! shares, and the older or out-of-province codes that identity numbers keep
//! from their first registration.

/// A prefecture: code, name, share of the provincial population (percent).
pub struct Prefecture {
    pub code: u32,
    pub name: &'static str,
    pub share: f64,
}

/// A county-level division: code, name, relative weight within its prefecture.
pub struct County {
    pub code: u32,
    pub name: &'static str,
    pub weight: f64,
}

pub const PREFECTURES: [Prefecture; 16] = [
    Prefecture {
        code: 530100,
        name: "昆明市",
        share: 18.2,
    },
    Prefecture {
        code: 530300,
        name: "曲靖市",
        share: 12.4,
    },
    Prefecture {
        code: 530400,
        name: "玉溪市",
        share: 4.8,
    },
    Prefecture {
        code: 530500,
        name: "保山市",
        share: 5.0,
    },
    Prefecture {
        code: 530600,
        name: "昭通市",
        share: 10.5,
    },
    Prefecture {
        code: 530700,
        name: "丽江市",
        share: 2.6,
    },
    Prefecture {
        code: 530800,
        name: "普洱市",
        share: 5.0,
    },
    Prefecture {
        code: 530900,
        name: "临沧市",
        share: 4.7,
    },
    Prefecture {
        code: 532300,
        name: "楚雄彝族自治州",
        share: 5.2,
    },
    Prefecture {
        code: 532500,
        name: "红河哈尼族彝族自治州",
        share: 9.6,
    },
    Prefecture {
        code: 532600,
        name: "文山壮族苗族自治州",
        share: 7.4,
    },
    Prefecture {
        code: 532800,
        name: "西双版纳傣族自治州",
        share: 2.8,
    },
    Prefecture {
        code: 532900,
        name: "大理白族自治州",
        share: 7.1,
    },
    Prefecture {
        code: 533100,
        name: "德宏傣族景颇族自治州",
        share: 2.8,
    },
    Prefecture {
        code: 533300,
        name: "怒江傈僳族自治州",
        share: 1.2,
    },
    Prefecture {
        code: 533400,
        name: "迪庆藏族自治州",
        share: 0.8,
    },
];

macro_rules! counties {
    ($($code:literal $name:literal $w:literal),+ $(,)?) => {
        [$(County { code: $code, name: $name, weight: $w }),+]
    };
}

/// The county-level divisions; urban districts weigh more.
pub const COUNTIES: [County; 129] = counties![
    530102 "五华区" 4.0, 530103 "盘龙区" 3.5, 530111 "官渡区" 4.5, 530112 "西山区" 3.5,
    530113 "东川区" 1.0, 530114 "呈贡区" 2.0, 530115 "晋宁区" 1.2, 530124 "富民县" 0.6,
    530125 "宜良县" 1.6, 530126 "石林彝族自治县" 1.0, 530127 "嵩明县" 1.6,
    530128 "禄劝彝族苗族自治县" 1.8, 530129 "寻甸回族彝族自治县" 2.0, 530181 "安宁市" 1.7,
    530302 "麒麟区" 3.0, 530303 "沾益区" 1.5, 530304 "马龙区" 0.8, 530322 "陆良县" 2.5,
    530323 "师宗县" 1.5, 530324 "罗平县" 2.0, 530325 "富源县" 2.5, 530326 "会泽县" 3.0,
    530381 "宣威市" 4.0,
    530402 "红塔区" 3.0, 530403 "江川区" 1.2, 530423 "通海县" 1.3, 530424 "华宁县" 1.0,
    530425 "易门县" 1.0, 530426 "峨山彝族自治县" 1.0, 530427 "新平彝族傣族自治县" 1.2,
    530428 "元江哈尼族彝族傣族自治县" 1.0, 530481 "澄江市" 1.0,
    530502 "隆阳区" 4.0, 530521 "施甸县" 1.5, 530523 "龙陵县" 1.3, 530524 "昌宁县" 1.5,
    530581 "腾冲市" 3.0,
    530602 "昭阳区" 3.0, 530621 "鲁甸县" 1.5, 530622 "巧家县" 2.0, 530623 "盐津县" 1.5,
    530624 "大关县" 1.0, 530625 "永善县" 1.5, 530626 "绥江县" 0.6, 530627 "镇雄县" 5.0,
    530628 "彝良县" 2.0, 530629 "威信县" 1.5, 530681 "水富市" 0.4,
    530702 "古城区" 2.0, 530721 "玉龙纳西族自治县" 2.0, 530722 "永胜县" 2.0, 530723 "华坪县" 1.0,
    530724 "宁蒗彝族自治县" 1.5,
    530802 "思茅区" 2.5, 530821 "宁洱哈尼族彝族自治县" 1.0, 530822 "墨江哈尼族自治县" 1.5,
    530823 "景东彝族自治县" 1.5, 530824 "景谷傣族彝族自治县" 1.3,
    530825 "镇沅彝族哈尼族拉祜族自治县" 1.0, 530826 "江城哈尼族彝族自治县" 0.6,
    530827 "孟连傣族拉祜族佤族自治县" 0.6, 530828 "澜沧拉祜族自治县" 2.0, 530829 "西盟佤族自治县" 0.4,
    530902 "临翔区" 1.5, 530921 "凤庆县" 2.0, 530922 "云县" 2.0, 530923 "永德县" 1.5,
    530924 "镇康县" 0.8, 530925 "双江拉祜族佤族布朗族傣族自治县" 0.8, 530926 "耿马傣族佤族自治县" 1.3,
    530927 "沧源佤族自治县" 0.8,
    532301 "楚雄市" 3.0, 532302 "禄丰市" 2.0, 532322 "双柏县" 0.7, 532323 "牟定县" 0.9,
    532324 "南华县" 1.0, 532325 "姚安县" 0.9, 532326 "大姚县" 1.2, 532327 "永仁县" 0.5,
    532328 "元谋县" 1.0, 532329 "武定县" 1.3,
    532501 "个旧市" 2.0, 532502 "开远市" 1.5, 532503 "蒙自市" 2.0, 532504 "弥勒市" 2.5,
    532523 "屏边苗族自治县" 0.8, 532524 "建水县" 2.5, 532525 "石屏县" 1.4, 532527 "泸西县" 1.8,
    532528 "元阳县" 1.8, 532529 "红河县" 1.4, 532530 "金平苗族瑶族傣族自治县" 1.6, 532531 "绿春县" 1.0,
    532532 "河口瑶族自治县" 0.5,
    532601 "文山市" 2.5, 532622 "砚山县" 2.0, 532623 "西畴县" 1.0, 532624 "麻栗坡县" 1.2,
    532625 "马关县" 1.5, 532626 "丘北县" 2.0, 532627 "广南县" 3.0, 532628 "富宁县" 1.8,
    532801 "景洪市" 3.0, 532822 "勐海县" 2.0, 532823 "勐腊县" 1.5,
    532901 "大理市" 3.5, 532922 "漾濞彝族自治县" 0.6, 532923 "祥云县" 2.0, 532924 "宾川县" 1.8,
    532925 "弥渡县" 1.3, 532926 "南涧彝族自治县" 1.0, 532927 "巍山彝族回族自治县" 1.3,
    532928 "永平县" 0.8, 532929 "云龙县" 1.0, 532930 "洱源县" 1.2, 532931 "剑川县" 0.8,
    532932 "鹤庆县" 1.2,
    533102 "瑞丽市" 1.2, 533103 "芒市" 2.0, 533122 "梁河县" 0.8, 533123 "盈江县" 1.5,
    533124 "陇川县" 1.0,
    533301 "泸水市" 1.5, 533323 "福贡县" 1.0, 533324 "贡山独龙族怒族自治县" 0.4,
    533325 "兰坪白族普米族自治县" 1.5,
    533401 "香格里拉市" 2.0, 533422 "德钦县" 0.8, 533423 "维西傈僳族自治县" 1.3,
];

/// Codes that identity numbers issued before a re-division still carry, with
/// the county that succeeded them.
pub const OLD_CODES: [(u32, u32); 13] = [
    (530121, 530114), // 呈贡县
    (530122, 530115), // 晋宁县
    (530321, 530304), // 马龙县
    (530328, 530303), // 沾益县
    (530421, 530403), // 江川县
    (530422, 530481), // 澄江县
    (530522, 530581), // 腾冲县
    (532331, 532302), // 禄丰县
    (532522, 532503), // 蒙自县
    (532526, 532504), // 弥勒县
    (532621, 532601), // 文山县
    (533321, 533301), // 泸水县
    (533421, 533401), // 中甸县
];

/// First-registration codes of people who moved to Yunnan from elsewhere.
pub const OUT_OF_PROVINCE: [u32; 10] = [
    510104, 520102, 450102, 430102, 500101, 440106, 330106, 110105, 310115, 510602,
];

pub fn prefecture_of(county: u32) -> &'static Prefecture {
    let code = county / 100 * 100;
    PREFECTURES
        .iter()
        .find(|p| p.code == code)
        .unwrap_or(&PREFECTURES[0])
}

/// The county index sampling weights: prefecture share spread over its
/// counties by their relative weights.
pub fn county_weights() -> Vec<f64> {
    COUNTIES
        .iter()
        .map(|c| {
            let p = prefecture_of(c.code);
            let total: f64 = COUNTIES
                .iter()
                .filter(|o| o.code / 100 == c.code / 100)
                .map(|o| o.weight)
                .sum();
            p.share * c.weight / total
        })
        .collect()
}

/// Whether a county is a city district or county-level city: more people have
/// gas, higher incomes.
pub fn is_urban(county: &County) -> bool {
    county.name.ends_with('区') || county.name.ends_with('市')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_county_belongs_to_a_listed_prefecture() {
        for c in &COUNTIES {
            assert!(
                PREFECTURES.iter().any(|p| p.code == c.code / 100 * 100),
                "{}",
                c.code
            );
        }
        let codes: std::collections::HashSet<u32> = COUNTIES.iter().map(|c| c.code).collect();
        assert_eq!(codes.len(), COUNTIES.len());
        for (old, new) in OLD_CODES {
            assert!(!codes.contains(&old) && codes.contains(&new), "{old} {new}");
        }
        let total: f64 = county_weights().iter().sum();
        assert!((total - 100.0).abs() < 0.5, "{total}");
    }
}
