//! The three application profiles of `config/profiles.json` (SCORING.md §0).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::NabError;
use super::data::read_json;
use super::scoring::Costs;

/// Profile names in the order NAB's tables print them.
pub const PROFILE_NAMES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "CostMatrix")]
    cost_matrix: RawCostMatrix,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCostMatrix {
    tp_weight: f64,
    fp_weight: f64,
    fn_weight: f64,
}

/// A named application profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `standard`, `reward_low_FP_rate` or `reward_low_FN_rate`.
    pub name: String,
    /// Its weights.
    pub costs: Costs,
}

/// Reads `config/profiles.json`, returning the three profiles in
/// [`PROFILE_NAMES`] order; a missing one is an error.
pub fn load_profiles(dir: &Path) -> Result<Vec<Profile>, NabError> {
    let path = dir.join("config/profiles.json");
    let raw: BTreeMap<String, RawProfile> = read_json(&path)?;
    PROFILE_NAMES
        .iter()
        .map(|&name| {
            let m = &raw
                .get(name)
                .ok_or_else(|| NabError::Invalid {
                    path: path.clone(),
                    reason: format!("profile {name} missing"),
                })?
                .cost_matrix;
            Ok(Profile {
                name: name.to_owned(),
                costs: Costs {
                    tp: m.tp_weight,
                    fp: m.fp_weight,
                    fn_: m.fn_weight,
                },
            })
        })
        .collect()
}
