//! `dainet predict`: local inference with a saved model, the first piece of edge serving.
//!
//! Input rows come from an IDX images file (gzip or plain; pixels scaled by 1/255 as in
//! training) or a CSV file of exactly the model's number of numeric features per row (a
//! header row is detected and skipped; `--label-column` drops a label column and reports
//! accuracy).

use anyhow::{bail, Context, Result};
use dainet_ml::data::csv::{load_csv, ColumnRef, CsvOptions};
use dainet_ml::data::idx::read_idx;
use dainet_ml::eval::predict_proba;
use dainet_ml::model_file::load_model;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `dainet predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A model file written by `dainet simulate` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Rows to classify: an IDX images file, or a CSV file (by the .csv extension).
    #[arg(long)]
    pub input: PathBuf,
    /// Print each row's class probabilities too.
    #[arg(long)]
    pub probs: bool,
    /// CSV only: a label column to leave out of the features and score against.
    #[arg(long)]
    pub label_column: Option<String>,
}

/// Reads input rows: `(features, labels if known)`.
fn read_rows(path: &Path, dim: usize, label_column: Option<&str>) -> Result<(Vec<f32>, Option<Vec<u32>>)> {
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        // With no label column, read every column as a feature: name a column that does
        // not exist as the label, impossible, so load with an explicit extra pass instead.
        let opts = CsvOptions {
            label_column: label_column.map(|c| c.parse::<ColumnRef>().expect("infallible")),
            ..CsvOptions::default()
        };
        if label_column.is_some() {
            let data = load_csv(path, &opts)?;
            if data.dataset.dim() != dim {
                bail!("{}: rows have {} features, the model takes {dim}", path.display(), data.dataset.dim());
            }
            return Ok((data.dataset.features().to_vec(), Some(data.dataset.labels().to_vec())));
        }
        return Ok((read_feature_csv(path, dim)?, None));
    }
    let array = read_idx(path)?;
    let per_row: usize = array.dims.iter().skip(1).product();
    if array.dims.len() < 2 || per_row != dim {
        bail!("{}: IDX rows have shape {:?}, the model takes {dim} features per row", path.display(), &array.dims[1..]);
    }
    Ok((array.data.iter().map(|&b| f32::from(b) / 255.0f32).collect(), None))
}

/// A CSV of feature columns only.
fn read_feature_csv(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<Option<f32>> = cells.iter().map(|c| c.parse::<f32>().ok().filter(|v| v.is_finite())).collect();
        if i == 0 && parsed.iter().any(Option::is_none) {
            continue; // a header row
        }
        if cells.len() != dim {
            bail!("{}: line {}: {} cells, the model takes {dim} features", path.display(), i + 1, cells.len());
        }
        for (j, v) in parsed.into_iter().enumerate() {
            let v = v.with_context(|| {
                format!("{}: line {}, column {}: {:?} is not a finite number", path.display(), i + 1, j + 1, cells[j])
            })?;
            out.push(v);
        }
    }
    if out.is_empty() {
        bail!("{}: no rows to classify", path.display());
    }
    Ok(out)
}

/// Runs `dainet predict`, printing `row<TAB>class[<TAB>p0 p1 …]` per input row.
pub fn predict(args: PredictArgs) -> Result<()> {
    let file = load_model(&args.model)?;
    let model = file.spec.build();
    let dim = model.input_dim();
    let (x, labels) = read_rows(&args.input, dim, args.label_column.as_deref())?;
    let probs = predict_proba(model.as_ref(), file.params.values(), &x);
    let classes = model.num_classes();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut correct = 0;
    for (i, p) in probs.chunks_exact(classes).enumerate() {
        let class = p.iter().enumerate().fold(0, |best, (c, &v)| if v > p[best] { c } else { best });
        write!(out, "{i}\t{class}")?;
        if args.probs {
            write!(out, "\t")?;
            for (c, v) in p.iter().enumerate() {
                write!(out, "{}{v:.6}", if c > 0 { " " } else { "" })?;
            }
        }
        writeln!(out)?;
        if let Some(labels) = &labels {
            correct += usize::from(labels[i] as usize == class);
        }
    }
    out.flush()?;
    if let Some(labels) = &labels {
        eprintln!("accuracy {:.4} on {} rows", correct as f64 / labels.len() as f64, labels.len());
    }
    Ok(())
}
