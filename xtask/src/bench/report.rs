//! What a bench run reports: each figure's runs summarised, set beside its baseline, printed
//! as a Markdown table and written as JSON.
//!
//! The JSON shape is a contract with whatever reads it (CI summaries, the issue notes):
//! `{"figures": [{"name", "value", "unit", "runs", "min", "max", "baseline", "baseline_value",
//! "ratio"}]}`, with `baseline`, `baseline_value` and `ratio` null when a figure has none.

use super::Figure;
use serde::Serialize;
use std::path::Path;

/// The timed runs of one figure, reduced to what is reported.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Summary {
    /// How many timed runs (warm-ups excluded).
    pub(crate) runs: usize,
    /// The median run: the reported value, robust to one slow or lucky run.
    pub(crate) median: f64,
    /// The lowest run.
    pub(crate) min: f64,
    /// The highest run.
    pub(crate) max: f64,
}

impl Summary {
    /// Summarises `samples`; the median of an even count is the mean of the middle two.
    /// Fails on no samples or a non-finite one, which JSON cannot carry and no figure means.
    pub(crate) fn of(samples: &[f64]) -> Result<Self, String> {
        if samples.is_empty() {
            return Err("no runs to summarise".into());
        }
        if let Some(bad) = samples.iter().find(|s| !s.is_finite()) {
            return Err(format!("a run measured {bad}"));
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Ok(Self {
            runs: sorted.len(),
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// One row of the report, serialised field for field into the JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FigureResult {
    /// The figure's name.
    pub(crate) name: &'static str,
    /// The median of the timed runs.
    pub(crate) value: f64,
    /// The unit of `value`, `min` and `max`.
    pub(crate) unit: &'static str,
    /// How many timed runs.
    pub(crate) runs: usize,
    /// The lowest run.
    pub(crate) min: f64,
    /// The highest run.
    pub(crate) max: f64,
    /// The baseline's name, if the figure has one.
    pub(crate) baseline: Option<&'static str>,
    /// The baseline's value in this invocation; null if it has none or it failed to measure.
    pub(crate) baseline_value: Option<f64>,
    /// `value / baseline_value`, when both exist and the baseline is not zero.
    pub(crate) ratio: Option<f64>,
}

/// The top level of `results.json`.
#[derive(Serialize)]
struct Results<'a> {
    figures: &'a [FigureResult],
}

/// Sets each measured figure beside its baseline's value from the same invocation.
pub(crate) fn resolve(measured: &[(&Figure, Summary)]) -> Vec<FigureResult> {
    let value_of = |name: &str| {
        measured
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(_, s)| s.median)
    };
    measured
        .iter()
        .map(|(figure, summary)| {
            let baseline_value = figure.baseline.and_then(value_of);
            FigureResult {
                name: figure.name,
                value: summary.median,
                unit: figure.unit,
                runs: summary.runs,
                min: summary.min,
                max: summary.max,
                baseline: figure.baseline,
                baseline_value,
                ratio: baseline_value
                    .filter(|b| *b != 0.0)
                    .map(|b| summary.median / b),
            }
        })
        .collect()
}

/// The JSON document, pretty-printed.
pub(crate) fn to_json(results: &[FigureResult]) -> Result<String, String> {
    serde_json::to_string_pretty(&Results { figures: results })
        .map_err(|e| format!("cannot serialise the results: {e}"))
}

/// Writes the JSON document to `path`, creating its directory.
pub(crate) fn write_json(path: &Path, results: &[FigureResult]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut json = to_json(results)?;
    json.push('\n');
    std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The results as a Markdown table, ready to paste into docs/BENCHMARKS.md.
pub(crate) fn markdown_table(results: &[FigureResult]) -> String {
    let mut table = String::from(
        "| figure | value | unit | min | max | runs | baseline | ratio |\n\
         |---|---:|---|---:|---:|---:|---|---:|\n",
    );
    for r in results {
        let baseline = match (r.baseline, r.baseline_value) {
            (Some(name), Some(value)) => format!("{name} ({})", number(value)),
            (Some(name), None) => format!("{name} (not measured)"),
            (None, _) => "–".to_string(),
        };
        let ratio = r
            .ratio
            .map_or_else(|| "–".to_string(), |x| format!("{x:.2}"));
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {baseline} | {ratio} |\n",
            r.name,
            number(r.value),
            r.unit,
            number(r.min),
            number(r.max),
            r.runs,
        ));
    }
    table
}

/// About four significant digits: enough to compare runs, few enough to read at a glance.
pub(crate) fn number(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 1000.0 {
        format!("{x:.0}")
    } else if magnitude >= 100.0 {
        format!("{x:.1}")
    } else if magnitude >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Measure;
    use serde_json::{json, Value};

    fn figure(name: &'static str, baseline: Option<&'static str>) -> Figure {
        Figure {
            name,
            unit: "MB/s",
            baseline,
            measure: Measure::Alone(|_| Ok(1.0)),
        }
    }

    fn summary(median: f64) -> Summary {
        Summary {
            runs: 5,
            median,
            min: median - 1.0,
            max: median + 1.0,
        }
    }

    #[test]
    fn median_of_odd_runs_is_the_middle_run() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                runs: 5,
                median: 3.0,
                min: 1.0,
                max: 5.0
            }
        );
    }

    #[test]
    fn median_of_even_runs_is_the_mean_of_the_middle_two() {
        let s = Summary::of(&[10.0, 2.0, 4.0, 8.0]).unwrap();
        assert_eq!((s.runs, s.median, s.min, s.max), (4, 6.0, 2.0, 10.0));
        let single = Summary::of(&[7.5]).unwrap();
        assert_eq!((single.median, single.min, single.max), (7.5, 7.5, 7.5));
    }

    #[test]
    fn no_runs_or_non_finite_runs_are_errors() {
        assert!(Summary::of(&[]).is_err());
        assert!(Summary::of(&[1.0, f64::NAN]).is_err());
        assert!(Summary::of(&[f64::INFINITY]).is_err());
    }

    #[test]
    fn ratio_is_value_over_the_baseline_from_the_same_run() {
        let quinn = figure("quinn.raw_MBps", None);
        let stream = figure("stream.reliable_MBps", Some("quinn.raw_MBps"));
        let results = resolve(&[(&quinn, summary(800.0)), (&stream, summary(600.0))]);
        assert_eq!(results[0].baseline, None);
        assert_eq!(results[0].baseline_value, None);
        assert_eq!(results[0].ratio, None);
        assert_eq!(results[1].baseline, Some("quinn.raw_MBps"));
        assert_eq!(results[1].baseline_value, Some(800.0));
        assert_eq!(results[1].ratio, Some(0.75));
    }

    #[test]
    fn a_baseline_that_failed_or_is_zero_gives_no_ratio() {
        let stream = figure("stream.reliable_MBps", Some("quinn.raw_MBps"));
        let missing = resolve(&[(&stream, summary(600.0))]);
        assert_eq!(missing[0].baseline, Some("quinn.raw_MBps"));
        assert_eq!((missing[0].baseline_value, missing[0].ratio), (None, None));

        let quinn = figure("quinn.raw_MBps", None);
        let zero = resolve(&[(&quinn, summary(0.0)), (&stream, summary(600.0))]);
        assert_eq!((zero[1].baseline_value, zero[1].ratio), (Some(0.0), None));
    }

    #[test]
    fn json_has_exactly_the_agreed_shape() {
        let tcp = figure("tcp.raw_MBps", None);
        let tls = figure("tls_tcp.raw_MBps", Some("tcp.raw_MBps"));
        let results = resolve(&[(&tcp, summary(4000.0)), (&tls, summary(1000.0))]);
        let parsed: Value = serde_json::from_str(&to_json(&results).unwrap()).unwrap();
        assert_eq!(
            parsed,
            json!({"figures": [
                {"name": "tcp.raw_MBps", "value": 4000.0, "unit": "MB/s", "runs": 5,
                 "min": 3999.0, "max": 4001.0,
                 "baseline": null, "baseline_value": null, "ratio": null},
                {"name": "tls_tcp.raw_MBps", "value": 1000.0, "unit": "MB/s", "runs": 5,
                 "min": 999.0, "max": 1001.0,
                 "baseline": "tcp.raw_MBps", "baseline_value": 4000.0, "ratio": 0.25},
            ]})
        );
        // Numbers are JSON numbers (floats stay floats), runs an integer, keys in the agreed order.
        let text = to_json(&results).unwrap();
        assert!(text.contains("\"value\": 4000.0"), "{text}");
        assert!(text.contains("\"runs\": 5,"), "{text}");
        let keys: Vec<&String> = parsed["figures"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 9);
        let order = [
            "\"name\"",
            "\"value\"",
            "\"unit\"",
            "\"runs\"",
            "\"min\"",
            "\"max\"",
            "\"baseline\"",
            "\"baseline_value\"",
            "\"ratio\"",
        ];
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn json_of_no_figures_is_an_empty_list() {
        let parsed: Value = serde_json::from_str(&to_json(&[]).unwrap()).unwrap();
        assert_eq!(parsed, json!({"figures": []}));
    }

    #[test]
    fn json_is_written_with_its_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let path = dir.join("nested").join("results.json");
        let tcp = figure("tcp.raw_MBps", None);
        write_json(&path, &resolve(&[(&tcp, summary(10.0))])).unwrap();
        let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed["figures"][0]["value"], json!(10.0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn table_has_a_row_per_figure_with_dashes_for_no_baseline() {
        let tcp = figure("tcp.raw_MBps", None);
        let tls = figure("tls_tcp.raw_MBps", Some("tcp.raw_MBps"));
        let table = markdown_table(&resolve(&[
            (&tcp, summary(4612.25)),
            (&tls, summary(1153.0)),
        ]));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[2],
            "| tcp.raw_MBps | 4612 | MB/s | 4611 | 4613 | 5 | – | – |"
        );
        assert_eq!(
            lines[3],
            "| tls_tcp.raw_MBps | 1153 | MB/s | 1152 | 1154 | 5 | tcp.raw_MBps (4612) | 0.25 |"
        );
    }

    #[test]
    fn numbers_keep_about_four_significant_digits() {
        assert_eq!(number(4612.7), "4613");
        assert_eq!(number(712.34), "712.3");
        assert_eq!(number(2.5), "2.50");
        assert_eq!(number(0.9987), "0.999");
    }
}
