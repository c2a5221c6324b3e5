//! `dainet predict`: local inference with a saved model, the first piece of edge serving.
//!
//! Input rows come from an IDX images file (gzip or plain; pixels scaled by 1/255 as in
//! training) or a CSV file of exactly the model's number of numeric features per row (read
//! by `dainet-ml`'s CSV reader: header detected, quotes allowed; `--label-column` drops a
//! label column and reports accuracy).

use anyhow::{bail, Result};
use dainet_ml::data::csv::{load_csv, load_csv_features, ColumnRef, CsvOptions};
use dainet_ml::data::idx::read_idx;
use dainet_ml::eval::predict_proba;
use dainet_ml::model_file::{load_model, ModelFile};
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
    let (x, got, labels) = if is_csv {
        let label_column = label_column.map(|c| match c.parse::<ColumnRef>() {
            Ok(column) => column,
            Err(never) => match never {},
        });
        let labelled = label_column.is_some();
        let opts = CsvOptions { label_column, ..CsvOptions::default() };
        if labelled {
            let data = load_csv(path, &opts)?.dataset;
            (data.features().to_vec(), data.dim(), Some(data.labels().to_vec()))
        } else {
            let (x, got) = load_csv_features(path, &opts)?;
            (x, got, None)
        }
    } else {
        let array = read_idx(path)?;
        let per_row: usize = array.dims.iter().skip(1).product();
        let x = array.data.iter().map(|&b| f32::from(b) / 255.0f32).collect();
        (x, if array.dims.len() < 2 { 1 } else { per_row }, None)
    };
    if got != dim {
        bail!("{}: rows have {got} features, the model takes {dim}", path.display());
    }
    Ok((x, labels))
}

/// Refuses a model with a NaN or infinite weight: it would print a class for every row with
/// NaN probabilities, an answer that looks like one and is not (a run that diverged saves
/// such a model).
fn refuse_non_finite(path: &Path, file: &ModelFile) -> Result<()> {
    let values = file.params.values();
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if let Some(first) = values.iter().position(|v| !v.is_finite()) {
        let layout = file.params.layout();
        let tensor = (0..layout.tensors().len())
            .find(|&i| layout.range(i).contains(&first))
            .map_or("?", |i| layout.tensors()[i].name.as_str());
        bail!(
            "{}: {bad} of the model's {} weights are not finite numbers (the first, in tensor {tensor}, is {}); \
             the training that wrote it diverged: lower --lr or pick an earlier checkpoint",
            path.display(),
            values.len(),
            values[first]
        );
    }
    Ok(())
}

/// Runs `dainet predict`, printing `row<TAB>class[<TAB>p0 p1 …]` per input row.
pub fn predict(args: PredictArgs) -> Result<()> {
    let file = load_model(&args.model)?;
    refuse_non_finite(&args.model, &file)?;
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
