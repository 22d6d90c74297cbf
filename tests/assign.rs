//! Training's target assignment (src/assign/): OT held to tools/ot_reference.py's fixtures,
//! Hungarian held to SciPy's fixtures and to brute force, the supply fix-up, bad input, and
//! `kpg debug ot` as a binary.

mod common;

use std::process::Command;

use kpg::assign::{
    assign_batch, hungarian_assign, hungarian_batch, linear_sum_assignment_max, ot_assign,
    ot_batch, Assignment, Method, OtParams, OtWorkspace, OwnedProblem, Problem,
};
use kpg::KpgError;
use serde_json::Value;

/// Plans: the reference and kpg agree to about 1e-12 (the same operations in a different
/// summation order, amplified by 1/eps); 1e-6 relative leaves room for other libm builds.
const PLAN_ATOL: f64 = 1e-9;
const PLAN_RTOL: f64 = 1e-6;

fn read_json(name: &str) -> Value {
    let path = common::fixtures().join("ot").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn load_problems(doc: &Value) -> (Vec<OwnedProblem>, OtParams) {
    let problems = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let rows = p["score"].as_array().unwrap();
            let slots = rows[0].as_array().unwrap().len();
            OwnedProblem {
                score: rows
                    .iter()
                    .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
                    .collect(),
                targets: rows.len(),
                slots,
                has_null: p["has_null"].as_bool().unwrap(),
            }
        })
        .collect();
    let d = OtParams::default();
    let params = OtParams {
        tau: doc["tau"].as_f64().unwrap_or(d.tau),
        top_k: doc["top_k"].as_u64().map_or(d.top_k, |k| k as usize),
        eps: doc["eps"].as_f64().unwrap_or(d.eps),
        iters: doc["iters"].as_u64().map_or(d.iters, |k| k as usize),
    };
    (problems, params)
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(row) => row.iter().map(|y| y.as_f64().unwrap()).collect(),
            None => vec![x.as_f64().unwrap()],
        })
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Checks OT results (as JSON values, from the library or the binary) against the reference's.
fn check_ot(what: &str, got: &[Value], want: &[Value], whys: &[Value]) {
    assert_eq!(got.len(), want.len(), "{what}: number of results");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let why = whys[k].as_str().unwrap_or("");
        assert_eq!(
            f64s(&g["supply"]),
            f64s(&w["supply"]),
            "{what} problem {k} ({why}): supply"
        );
        assert_eq!(
            usizes(&g["assign"]),
            usizes(&w["assign"]),
            "{what} problem {k} ({why}): assign"
        );
        let (gp, wp) = (f64s(&g["plan"]), f64s(&w["plan"]));
        assert_eq!(gp.len(), wp.len(), "{what} problem {k}: plan size");
        for (e, (a, b)) in gp.iter().zip(&wp).enumerate() {
            let ok = (a - b).abs() <= PLAN_ATOL + PLAN_RTOL * b.abs();
            assert!(
                ok,
                "{what} problem {k} ({why}): plan element {e} is {a} vs {b} (diff {:e})",
                (a - b).abs()
            );
        }
    }
}

fn ot_json(r: &kpg::assign::OtResult, slots: usize) -> Value {
    serde_json::json!({
        "supply": r.supply,
        "plan": r.plan.chunks(slots).collect::<Vec<_>>(),
        "assign": r.assign,
    })
}

const FIXTURE_FILES: [&str; 2] = ["problems.json", "problems_params.json"];

#[test]
fn ot_matches_reference_fixtures() {
    let expected = read_json("expected.json");
    for name in FIXTURE_FILES {
        let (owned, params) = load_problems(&read_json(name));
        let problems: Vec<Problem> = owned.iter().map(OwnedProblem::view).collect();
        let got: Vec<Value> = ot_batch(&problems, &params)
            .unwrap()
            .iter()
            .zip(&owned)
            .map(|(r, p)| ot_json(r, p.slots))
            .collect();
        let want = &expected[name];
        check_ot(
            name,
            &got,
            want["ot"].as_array().unwrap(),
            want["why"].as_array().unwrap(),
        );
    }
}

#[test]
fn hungarian_matches_scipy_fixtures() {
    let expected = read_json("expected.json");
    for name in FIXTURE_FILES {
        let (owned, _) = load_problems(&read_json(name));
        let problems: Vec<Problem> = owned.iter().map(OwnedProblem::view).collect();
        let got = hungarian_batch(&problems).unwrap();
        let want = expected[name]["hungarian"].as_array().unwrap();
        let whys = expected[name]["why"].as_array().unwrap();
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, &usizes(&w["assign"]), "{name} problem {k} ({})", whys[k]);
        }
    }
}

/// xorshift64*: deterministic test randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

/// Every permutation of 0..n, by Heap's algorithm.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

#[test]
fn hungarian_matches_brute_force() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for n in 1..=7 {
        let perms = permutations(n);
        for trial in 0..12 {
            // Odd trials draw from four values, so that many matchings tie for the best.
            let score: Vec<f64> = (0..n * n)
                .map(|_| {
                    if trial % 2 == 1 {
                        rng.below(4) as f64
                    } else {
                        rng.next() * 2.0
                    }
                })
                .collect();
            let total = |cols: &[usize]| -> f64 {
                cols.iter()
                    .enumerate()
                    .map(|(r, &c)| score[r * n + c])
                    .sum()
            };
            let (mut best, mut best_count, mut best_perm) = (f64::NEG_INFINITY, 0, vec![]);
            for p in &perms {
                let t = total(p);
                if t > best + 1e-12 {
                    (best, best_count, best_perm) = (t, 1, p.clone());
                } else if (t - best).abs() <= 1e-12 {
                    best_count += 1;
                }
            }
            let got = linear_sum_assignment_max(&score, n).unwrap();
            let mut seen = got.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}: not a permutation");
            assert!(
                (total(&got) - best).abs() <= 1e-12,
                "n={n} trial {trial}: total {} vs best {best}",
                total(&got)
            );
            if best_count == 1 {
                assert_eq!(got, best_perm, "n={n} trial {trial}: unique optimum");
            }
        }
    }
}

/// With a null row, the Hungarian assignment is the best matching of slots to the real targets
/// (each at most once) and the null target (any number of times).
#[test]
fn hungarian_with_null_matches_brute_force() {
    let mut rng = Rng(0xFEED_0002);
    for slots in [1, 2, 3, 5, 6] {
        for real in 0..slots {
            let targets = real + 1;
            let p = OwnedProblem {
                score: (0..targets * slots).map(|_| rng.next() * 2.0).collect(),
                targets,
                slots,
                has_null: true,
            };
            let got = hungarian_assign(&p.view()).unwrap();
            // Brute force: every map slot -> target using each real target exactly once.
            let mut best = f64::NEG_INFINITY;
            let mut choice = vec![0usize; slots];
            loop {
                let uses_each_once =
                    (0..real).all(|t| choice.iter().filter(|&&c| c == t).count() == 1);
                if uses_each_once {
                    let t: f64 = (0..slots).map(|j| p.score[choice[j] * slots + j]).sum();
                    best = best.max(t);
                }
                let mut d = 0;
                while d < slots {
                    choice[d] += 1;
                    if choice[d] < targets {
                        break;
                    }
                    choice[d] = 0;
                    d += 1;
                }
                if d == slots {
                    break;
                }
            }
            let total: f64 = (0..slots).map(|j| p.score[got[j] * slots + j]).sum();
            assert!(
                (total - best).abs() <= 1e-12,
                "slots {slots}, real {real}: {total} vs {best}"
            );
            for t in 0..real {
                assert_eq!(got.iter().filter(|&&c| c == t).count(), 1, "{got:?}");
            }
        }
    }
}

#[test]
fn fixup_gives_back_by_slack_then_lower_index() {
    // Two equal rows: raw supply 1.4993 each, ceil 2 + 2 > 3 slots; equal slack, so the lower
    // index gives back first.
    let p = OwnedProblem {
        score: vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-30, 1e-30, 1e-30],
        targets: 3,
        slots: 3,
        has_null: true,
    };
    let r = ot_assign(&p.view(), &OtParams::default(), &mut OtWorkspace::default()).unwrap();
    assert_eq!(r.supply, vec![1.0, 2.0, 0.0]);

    // Random overflowing problems: totals match, the null gets 0, nobody goes below 1.
    let mut rng = Rng(0xF1C5_0003);
    let mut overflowing = 0;
    for _ in 0..200 {
        let real = 3 + rng.below(7);
        let slots = 10;
        let mut score: Vec<f64> = (0..(real + 1) * slots)
            .map(|_| 1e-12 * rng.next())
            .collect();
        for i in 0..real {
            for _ in 0..1 + rng.below(3) {
                score[i * slots + rng.below(slots)] = 1.0 + rng.next();
            }
        }
        let p = OwnedProblem {
            score,
            targets: real + 1,
            slots,
            has_null: true,
        };
        let r = ot_assign(&p.view(), &OtParams::default(), &mut OtWorkspace::default()).unwrap();
        assert_eq!(r.supply.iter().sum::<f64>(), slots as f64, "{:?}", r.supply);
        assert!(r.supply[..real].iter().all(|&s| s >= 1.0), "{:?}", r.supply);
        if r.supply[real] == 0.0 {
            overflowing += 1;
        }
    }
    assert!(
        overflowing > 20,
        "only {overflowing} problems needed the fix-up"
    );
}

#[test]
fn edge_shapes() {
    let params = OtParams::default();
    let mut ws = OtWorkspace::default();
    // Only the null target: it takes every slot.
    let p = OwnedProblem {
        score: vec![0.3; 10],
        targets: 1,
        slots: 10,
        has_null: true,
    };
    let r = ot_assign(&p.view(), &params, &mut ws).unwrap();
    assert_eq!(r.supply, vec![10.0]);
    assert_eq!(r.assign, vec![0; 10]);
    assert_eq!(hungarian_assign(&p.view()).unwrap(), vec![0; 10]);
    // One slot, one target, no null.
    let p = OwnedProblem {
        score: vec![0.0],
        targets: 1,
        slots: 1,
        has_null: false,
    };
    assert_eq!(
        ot_assign(&p.view(), &params, &mut ws).unwrap().assign,
        vec![0]
    );
    assert_eq!(hungarian_assign(&p.view()).unwrap(), vec![0]);
    // One target and the null: the target's supply is ceil of its top-3 normalised scores, and
    // the Hungarian matching gives it exactly one slot (its best against the null's).
    let p = OwnedProblem {
        score: vec![
            1.9, 0.1, 0.1, 0.1, // target
            0.1, 0.5, 0.5, 0.5, // null
        ],
        targets: 2,
        slots: 4,
        has_null: true,
    };
    let r = ot_assign(&p.view(), &params, &mut ws).unwrap();
    assert_eq!(r.supply.iter().sum::<f64>(), 4.0);
    assert_eq!(r.assign[0], 0);
    assert_eq!(hungarian_assign(&p.view()).unwrap(), vec![0, 1, 1, 1]);
}

#[test]
fn batch_equals_one_by_one_and_workspace_reuse_is_clean() {
    let (owned, params) = load_problems(&read_json("problems.json"));
    let problems: Vec<Problem> = owned.iter().map(OwnedProblem::view).collect();
    let batch = assign_batch(&problems, Method::Ot, &params).unwrap();
    // One workspace through problems of every size, largest first, so that a stale buffer
    // would show.
    let mut order: Vec<usize> = (0..problems.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(problems[k].targets * problems[k].slots));
    let mut ws = OtWorkspace::default();
    for k in order {
        let one = ot_assign(&problems[k], &params, &mut ws).unwrap();
        assert_eq!(batch[k], Assignment::Ot(one), "problem {k}");
    }
    let hb = assign_batch(&problems, Method::Hungarian, &params).unwrap();
    for (k, p) in problems.iter().enumerate() {
        assert_eq!(hb[k].assign(), hungarian_assign(p).unwrap(), "problem {k}");
    }
}

fn assign_error(problems: &[Problem]) -> (usize, &'static str, String) {
    for method in [Method::Ot, Method::Hungarian] {
        assert!(assign_batch(problems, method, &OtParams::default()).is_err());
    }
    match assign_batch(problems, Method::Ot, &OtParams::default()) {
        Err(KpgError::AssignInput {
            problem,
            field,
            reason,
        }) => (problem, field, reason),
        other => panic!("expected AssignInput, got {other:?}"),
    }
}

#[test]
fn bad_input_is_an_error_naming_problem_and_field() {
    let good = vec![0.5; 3 * 4];
    let ok = Problem {
        score: &good,
        targets: 3,
        slots: 4,
        has_null: true,
    };
    let nan = [0.5, f64::NAN, 0.5, 0.5];
    let neg = [0.5, 0.5, -1e-9, 0.5];
    let inf = [f64::INFINITY, 0.5, 0.5, 0.5];
    let cases: Vec<(Problem, &str, &str)> = vec![
        (
            Problem {
                score: &nan,
                targets: 1,
                slots: 4,
                has_null: true,
            },
            "score",
            "NaN",
        ),
        (
            Problem {
                score: &neg,
                targets: 1,
                slots: 4,
                has_null: true,
            },
            "score",
            "slot 2",
        ),
        (
            Problem {
                score: &inf,
                targets: 1,
                slots: 4,
                has_null: true,
            },
            "score",
            "inf",
        ),
        (
            Problem {
                score: &good,
                targets: 3,
                slots: 3,
                has_null: true,
            },
            "score",
            "12 values",
        ),
        (
            Problem {
                score: &good,
                targets: 6,
                slots: 2,
                has_null: true,
            },
            "score",
            "6 targets for 2 slots",
        ),
        (
            Problem {
                score: &good,
                targets: 3,
                slots: 4,
                has_null: false,
            },
            "has_null",
            "3 targets for 4 slots",
        ),
        (
            Problem {
                score: &[],
                targets: 0,
                slots: 4,
                has_null: true,
            },
            "score",
            "no targets",
        ),
        (
            Problem {
                score: &[],
                targets: 3,
                slots: 0,
                has_null: true,
            },
            "score",
            "no slots",
        ),
    ];
    for (bad, field, needle) in cases {
        let batch = [ok, ok, bad, ok];
        let (problem, f, reason) = assign_error(&batch);
        assert_eq!((problem, f), (2, field), "{reason}");
        assert!(reason.contains(needle), "`{needle}` not in `{reason}`");
    }
    assert!(linear_sum_assignment_max(&[1.0, 2.0, 3.0], 2).is_err());
    assert!(linear_sum_assignment_max(&[1.0, f64::NAN, 3.0, 4.0], 2).is_err());
    for bad in [
        OtParams {
            tau: 0.0,
            ..Default::default()
        },
        OtParams {
            eps: f64::NAN,
            ..Default::default()
        },
        OtParams {
            top_k: 0,
            ..Default::default()
        },
        OtParams {
            iters: 0,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            ot_batch(&[ok], &bad),
            Err(KpgError::InvalidArgument(_))
        ));
    }
}

fn debug_ot(args: &[&str]) -> std::process::Output {
    Command::new(common::kpg_bin())
        .args(["debug", "ot"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn debug_ot_binary_matches_fixtures() {
    let expected = read_json("expected.json");
    for name in FIXTURE_FILES {
        let path = common::fixtures().join("ot").join(name);
        let want = &expected[name];
        let out = debug_ot(&["--input", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        check_ot(
            name,
            got["results"].as_array().unwrap(),
            want["ot"].as_array().unwrap(),
            want["why"].as_array().unwrap(),
        );
        let out = debug_ot(&["--input", path.to_str().unwrap(), "--method", "hungarian"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = got["results"].as_array().unwrap();
        let want = want["hungarian"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g, w);
        }
    }
}

#[test]
fn debug_ot_binary_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ragged = write(
        "ragged.json",
        r#"{"problems": [{"score": [[1, 2]], "has_null": true}, {"score": [[1, 2], [3]], "has_null": true}]}"#,
    );
    let out = debug_ot(&["--input", ragged.to_str().unwrap()]);
    common::assert_usage_error(&out, &["problem 1", "`score`", "row 1 has 1 values"]);

    let negative = write(
        "negative.json",
        r#"{"tau": 5, "problems": [{"score": [[1, -2]], "has_null": true}]}"#,
    );
    let out = debug_ot(&[
        "--input",
        negative.to_str().unwrap(),
        "--method",
        "hungarian",
    ]);
    common::assert_usage_error(&out, &["problem 0", "`score`", "-2"]);

    let no_null = write(
        "no_null.json",
        r#"{"problems": [{"score": [[1, 2]], "has_null": false}]}"#,
    );
    let out = debug_ot(&["--input", no_null.to_str().unwrap()]);
    common::assert_usage_error(&out, &["problem 0", "`has_null`"]);

    let unknown = write("unknown.json", r#"{"problems": [], "temperature": 3}"#);
    let out = debug_ot(&["--input", unknown.to_str().unwrap()]);
    common::assert_usage_error(&out, &["unknown.json", "temperature"]);

    let out = debug_ot(&["--input", dir.path().join("missing.json").to_str().unwrap()]);
    common::assert_usage_error(&out, &["missing.json", "not found"]);
}
