//! Model route → the ordered list of targets one request may try: tiers by priority, and within a tier a
//! weighted random order, so traffic splits by weight and a failing target falls through to the next.

use rand::Rng;

use crate::catalog::{ModelRoute, Target};

/// Every target of the route in the order to try them: best priority tier first, and within a tier a weighted
/// random order. Health and the attempt limit are applied by the caller, attempt by attempt.
pub fn plan<'r>(route: &'r ModelRoute, rng: &mut impl Rng) -> Vec<&'r Target> {
    let mut out = Vec::with_capacity(route.tiers.iter().map(|t| t.targets.len()).sum());
    for tier in &route.tiers {
        let mut remaining: Vec<&Target> = tier.targets.iter().collect();
        let mut weight_left = tier.total_weight;
        while !remaining.is_empty() {
            let mut pick = rng.random_range(0..weight_left.max(1));
            let idx = remaining
                .iter()
                .position(|t| {
                    let w = u64::from(t.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let t = remaining.swap_remove(idx);
            weight_left = weight_left.saturating_sub(u64::from(t.weight));
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use switchyard_shared::Price;
    use switchyard_shared::snapshot::*;

    fn route(targets: &[(u32, u32)]) -> Catalog {
        let snapshot = Snapshot {
            providers: vec![ProviderEntry {
                id: 1,
                name: "p".into(),
                kind: ProviderKind::OpenaiCompatible,
                base_url: "http://x/v1".into(),
                credential: None,
                timeouts: Default::default(),
                caps: Default::default(),
                model_caps: Vec::new(),
            }],
            models: vec![ModelEntry {
                name: "m".into(),
                price: Price::default(),
                targets: targets
                    .iter()
                    .enumerate()
                    .map(|(i, (weight, priority))| TargetEntry {
                        provider_id: 1,
                        upstream_model: format!("t{i}"),
                        weight: *weight,
                        priority: *priority,
                    })
                    .collect(),
                allowed_teams: None,
            }],
            ..Snapshot::empty(chrono::Utc::now())
        };
        Catalog::compile(&snapshot, &Default::default())
    }

    #[test]
    fn lower_priority_tiers_come_first() {
        let c = route(&[(1, 5), (1, 0), (1, 9)]);
        let plan = plan(c.model("m").unwrap(), &mut rand::rng());
        let names: Vec<&str> = plan.iter().map(|t| &*t.upstream_model).collect();
        assert_eq!(names, ["t1", "t0", "t2"]);
    }

    #[test]
    fn weights_split_traffic() {
        let c = route(&[(3, 0), (1, 0)]);
        let mut rng = rand::rng();
        let first_is_t0 =
            (0..4000).filter(|_| &*plan(c.model("m").unwrap(), &mut rng)[0].upstream_model == "t0").count();
        // expected 3000; allow a wide margin
        assert!((2700..3300).contains(&first_is_t0), "{first_is_t0}");
    }

    #[test]
    fn every_target_is_a_candidate() {
        let c = route(&[(1, 0), (1, 0), (1, 1), (1, 2), (1, 3)]);
        assert_eq!(plan(c.model("m").unwrap(), &mut rand::rng()).len(), 5);
    }
}
