//! The bodies of `POST /v1/models` and `POST /v1/models/{id}/score`.

use serde::Deserialize;
use utoipa::ToSchema;

/// A training request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainBody {
    #[schema(pattern = "^(linear_regression|logistic_regression|histogram|quantiles)$")]
    pub template: String,
    #[serde(default)]
    pub features: Vec<ColumnBody>,
    #[serde(default)]
    pub target: Option<ColumnBody>,
    /// Logistic regression: the label is 1 when the target is above this.
    #[serde(default)]
    pub above: Option<f64>,
    #[schema(minimum = 0.001, maximum = 100.0)]
    pub epsilon: f64,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub params: ParamsBody,
}

/// A column: `"dataset.field"`, or an object that also says how a unit's
/// rows are folded (`per_unit`: mean, min or max; mean by default) and may
/// narrow the declared bounds (`clamp`: [lower, upper]).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ColumnBody {
    Short(String),
    Full {
        dataset: String,
        field: String,
        #[serde(default)]
        #[schema(pattern = "^(mean|min|max)$")]
        per_unit: Option<String>,
        #[serde(default)]
        clamp: Option<[f64; 2]>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamsBody {
    #[schema(minimum = 1, maximum = 25)]
    pub iterations: Option<u32>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub learning_rate: Option<f64>,
    #[schema(minimum = 0.0, maximum = 10.0)]
    pub l2: Option<f64>,
    #[schema(minimum = 1, maximum = 10000)]
    pub bins: Option<u32>,
    #[schema(max_items = 99)]
    pub quantiles: Option<Vec<f64>>,
}

/// A scoring request: named subjects, or rows of feature values.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    #[serde(default)]
    pub rows: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    pub purpose: Option<String>,
}
