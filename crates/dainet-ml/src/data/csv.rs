//! CSV files of numeric features, a class label column and optionally a client id column,
//! read into a [`Dataset`].
//!
//! This module owns the CSV dialect dainet reads and the mapping of its columns. It
//! guarantees that:
//! - fields are comma-separated; a field may be double-quoted (a quote inside it written
//!   `""`, commas and line breaks allowed inside); `\r\n` line ends and a leading UTF-8 byte
//!   order mark are accepted; blank lines are skipped; spaces around a number are ignored;
//! - every row has as many cells as the header (or, without a header, the first row);
//! - every feature cell is a finite `f32`, every label a non-negative integer (`3` or `3.0`)
//!   below [`MAX_CLASSES`], and the dataset has `max label + 1` classes;
//! - the client id column, if any, is kept as strings (trimmed) and is not a feature;
//! - malformed input of any kind is a [`CsvError`] naming the file, the 1-based line and
//!   column and the offending cell, never a panic.

use dainet_core::text::{excerpt, shorten, EXCERPT_CHARS};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Dataset, DatasetError};

/// Labels must be below this (2^20): a larger label would ask for an absurd class count.
pub const MAX_CLASSES: usize = 1 << 20;

/// Whether the first row of a CSV file names the columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderMode {
    /// The first row is a header if any of its cells, other than the one in the client id
    /// column (when that is given by index), does not parse as an `f32`.
    #[default]
    Auto,
    /// The first row is a header.
    Present,
    /// There is no header; the first row is data.
    Absent,
}

/// A column, by header name or by 0-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRef {
    /// The column whose header cell is this name (needs a header row).
    Name(String),
    /// The column at this 0-based position.
    Index(usize),
}

impl FromStr for ColumnRef {
    type Err = std::convert::Infallible;

    /// All ASCII digits (and small enough for a `usize`) is an [`ColumnRef::Index`];
    /// anything else is a [`ColumnRef::Name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(i) = s.parse() {
                return Ok(ColumnRef::Index(i));
            }
        }
        Ok(ColumnRef::Name(s.to_string()))
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRef::Name(name) => write!(f, "{name:?}"),
            ColumnRef::Index(i) => write!(f, "{i}"),
        }
    }
}

/// How to read a CSV file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first row is a header.
    pub header: HeaderMode,
    /// The label column; `None` means the last column.
    pub label_column: Option<ColumnRef>,
    /// The natural client id column, kept as strings and excluded from the features.
    pub client_column: Option<ColumnRef>,
}

/// A CSV file read into a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvData {
    /// The examples, one per data row, in file order.
    pub dataset: Dataset,
    /// The client id of each row, if a client column was given.
    pub client_ids: Option<Vec<String>>,
    /// The header names of the feature columns, in feature order, if there is a header.
    pub feature_names: Option<Vec<String>>,
}

/// An error reading a CSV file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {cause}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not repeated as a source).
        cause: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("{}: line {line}: not UTF-8 text", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The line of the first invalid byte.
        line: usize,
    },
    /// A quoted field is never closed.
    #[error("{}: line {line}, column {column}: quoted field is never closed (missing '\"')", .path.display())]
    UnterminatedQuote {
        /// The file.
        path: PathBuf,
        /// The line where the field opens.
        line: usize,
        /// The column of the field.
        column: usize,
    },
    /// Characters follow the closing quote of a field.
    #[error("{}: line {line}, column {column}: unexpected {found:?} after a closing quote, expected ',' or end of line", .path.display())]
    AfterQuote {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The column of the field.
        column: usize,
        /// The character found.
        found: char,
    },
    /// The file holds no rows at all.
    #[error("{}: the file is empty (no rows)", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file has a header but no data rows.
    #[error("{}: header row but no data rows", .path.display())]
    NoDataRows {
        /// The file.
        path: PathBuf,
    },
    /// A row has a different number of cells than the first one.
    #[error("{}: line {line}: expected {expected} cells, got {got}", .path.display())]
    Ragged {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// Cells in the header (or first row).
        expected: usize,
        /// Cells in this row.
        got: usize,
    },
    /// A feature cell is not a finite number.
    #[error("{}: line {line}, column {column}: cell {} is not a finite number", .path.display(), excerpt(.cell))]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The 1-based column.
        column: usize,
        /// The cell.
        cell: String,
    },
    /// A label cell is not a non-negative integer below [`MAX_CLASSES`].
    #[error("{}: line {line}, column {column}: label {} is not a non-negative integer below {max}", .path.display(), excerpt(.cell), max = MAX_CLASSES)]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The 1-based column.
        column: usize,
        /// The cell.
        cell: String,
    },
    /// A column name is not in the header.
    #[error("{}: no column named {} in the header (columns: {})", .path.display(), excerpt(.name), shorten(&.available.join(", "), 4 * EXCERPT_CHARS))]
    UnknownColumn {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The header's names.
        available: Vec<String>,
    },
    /// A column was named but the file has no header row.
    #[error("{}: column {} is given by name but the file has no header row", .path.display(), excerpt(.name))]
    NameWithoutHeader {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A column index is not below the number of columns.
    #[error("{}: column index {index} is out of range: rows have {columns} cells (indices 0 to {})", .path.display(), .columns.saturating_sub(1))]
    ColumnOutOfRange {
        /// The file.
        path: PathBuf,
        /// The 0-based index asked for.
        index: usize,
        /// Columns in the file.
        columns: usize,
    },
    /// The label and client id columns are the same column.
    #[error("{}: the label column and the client id column are both column {index}", .path.display())]
    SameColumn {
        /// The file.
        path: PathBuf,
        /// The 0-based column.
        index: usize,
    },
    /// No column is left for features.
    #[error("{}: no feature columns: rows have {columns} cells, all used for the label or client id", .path.display())]
    NoFeatures {
        /// The file.
        path: PathBuf,
        /// Columns in the file.
        columns: usize,
    },
    /// The values do not form a valid [`Dataset`].
    #[error("{}: {cause}", .path.display())]
    Dataset {
        /// The file.
        path: PathBuf,
        /// The dataset error (in the message, not repeated as a source).
        cause: DatasetError,
    },
}

/// One CSV record: its cells and the 1-based line it starts on.
#[derive(Debug)]
struct Record {
    line: usize,
    cells: Vec<String>,
}

/// Splits CSV text into records, skipping blank lines.
fn parse_records(path: &Path, text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chars = text.chars().peekable();
    let mut records = Vec::new();
    let mut line = 1;
    while chars.peek().is_some() {
        let start_line = line;
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => break,
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => {
                    cells.push(std::mem::take(&mut cell));
                    quoted = false;
                }
                Some('"') if cell.is_empty() && !quoted => {
                    let (open_line, column) = (line, cells.len() + 1);
                    loop {
                        match chars.next() {
                            None => {
                                return Err(CsvError::UnterminatedQuote {
                                    path: path.to_path_buf(),
                                    line: open_line,
                                    column,
                                })
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                cell.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                cell.push(c);
                            }
                        }
                    }
                    quoted = true;
                    match chars.peek() {
                        None | Some(',') | Some('\n') | Some('\r') => {}
                        Some(&found) => {
                            return Err(CsvError::AfterQuote { path: path.to_path_buf(), line, column, found })
                        }
                    }
                }
                Some(c) => cell.push(c),
            }
        }
        let blank = cells.is_empty() && !quoted && cell.trim().is_empty();
        cells.push(cell);
        if !blank {
            records.push(Record { line: start_line, cells });
        }
    }
    Ok(records)
}

/// Parses a feature cell: a finite `f32`, spaces around it ignored.
fn parse_feature(cell: &str) -> Option<f32> {
    cell.trim().parse::<f32>().ok().filter(|v| v.is_finite())
}

/// Parses a label cell: a non-negative integer below [`MAX_CLASSES`], written `3` or `3.0`.
fn parse_label(cell: &str) -> Option<u32> {
    let v = cell.trim().parse::<f64>().ok()?;
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < MAX_CLASSES as f64 {
        Some(v as u32)
    } else {
        None
    }
}

/// Resolves `column` against the header (if any) and the column count.
fn resolve(path: &Path, column: &ColumnRef, header: Option<&[String]>, columns: usize) -> Result<usize, CsvError> {
    match column {
        ColumnRef::Index(index) if *index < columns => Ok(*index),
        ColumnRef::Index(index) => Err(CsvError::ColumnOutOfRange { path: path.to_path_buf(), index: *index, columns }),
        ColumnRef::Name(name) => {
            let Some(header) = header else {
                return Err(CsvError::NameWithoutHeader { path: path.to_path_buf(), name: name.clone() });
            };
            header.iter().position(|h| h == name.trim()).ok_or_else(|| CsvError::UnknownColumn {
                path: path.to_path_buf(),
                name: name.clone(),
                available: header.to_vec(),
            })
        }
    }
}

/// Reads a CSV file of numeric features and a label column (the last one unless
/// `opts.label_column` says otherwise), with an optional client id column.
///
/// Column indices are 0-based; line and column numbers in errors are 1-based.
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<CsvData, CsvError> {
    decode_csv(path, &read_file(path)?, opts)
}

/// [`load_csv`] of a file already in memory; `path` names it in errors. Never panics, and
/// allocates at most a small multiple of the input.
pub fn decode_csv(path: &Path, bytes: &[u8], opts: &CsvOptions) -> Result<CsvData, CsvError> {
    let table = read_table(path, bytes, opts, true)?;
    let labels = table.labels.expect("a labelled read yields labels");
    let num_classes = labels.iter().copied().max().map_or(1, |m| m as usize + 1);
    let dataset = Dataset::new(table.features, labels, table.dim, num_classes)
        .map_err(|source| CsvError::Dataset { path: path.to_path_buf(), cause: source })?;
    Ok(CsvData { dataset, client_ids: table.client_ids, feature_names: table.feature_names })
}

/// Reads a CSV file of numeric features only (no label column; `opts.label_column` is
/// ignored, a client column is still left out): returns the features row-major and the
/// number per row. This is the input of `dainet predict`.
pub fn load_csv_features(path: &Path, opts: &CsvOptions) -> Result<(Vec<f32>, usize), CsvError> {
    let table = read_table(path, &read_file(path)?, opts, false)?;
    Ok((table.features, table.dim))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CsvError> {
    std::fs::read(path).map_err(|cause| CsvError::Io { path: path.to_path_buf(), cause })
}

/// The cells of a CSV file, checked and split into features, labels and client ids.
struct Table {
    features: Vec<f32>,
    dim: usize,
    labels: Option<Vec<u32>>,
    client_ids: Option<Vec<String>>,
    feature_names: Option<Vec<String>>,
}

fn read_table(path: &Path, bytes: &[u8], opts: &CsvOptions, labelled: bool) -> Result<Table, CsvError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        CsvError::NotUtf8 { path: path.to_path_buf(), line }
    })?;
    let records = parse_records(path, text)?;
    let Some(first) = records.first() else {
        return Err(CsvError::Empty { path: path.to_path_buf() });
    };

    let has_header = match opts.header {
        HeaderMode::Present => true,
        HeaderMode::Absent => false,
        HeaderMode::Auto => {
            let skip = match &opts.client_column {
                Some(ColumnRef::Index(i)) => Some(*i),
                _ => None,
            };
            first.cells.iter().enumerate().any(|(i, cell)| Some(i) != skip && parse_feature(cell).is_none())
        }
    };
    let (header, rows) = if has_header {
        let names: Vec<String> = first.cells.iter().map(|c| c.trim().to_string()).collect();
        (Some(names), &records[1..])
    } else {
        (None, &records[..])
    };
    if rows.is_empty() {
        return Err(CsvError::NoDataRows { path: path.to_path_buf() });
    }
    let columns = first.cells.len();

    let label_col = match (&opts.label_column, labelled) {
        (_, false) => None,
        (Some(column), true) => Some(resolve(path, column, header.as_deref(), columns)?),
        (None, true) => Some(columns - 1),
    };
    let client_col = match &opts.client_column {
        Some(column) => Some(resolve(path, column, header.as_deref(), columns)?),
        None => None,
    };
    if let Some(index) = label_col.filter(|&l| client_col == Some(l)) {
        return Err(CsvError::SameColumn { path: path.to_path_buf(), index });
    }
    let feature_cols: Vec<usize> = (0..columns).filter(|&c| Some(c) != label_col && Some(c) != client_col).collect();
    if feature_cols.is_empty() {
        return Err(CsvError::NoFeatures { path: path.to_path_buf(), columns });
    }

    let mut features = Vec::with_capacity(rows.len() * feature_cols.len());
    let mut labels = label_col.map(|_| Vec::with_capacity(rows.len()));
    let mut client_ids = client_col.map(|_| Vec::with_capacity(rows.len()));
    for row in rows {
        if row.cells.len() != columns {
            return Err(CsvError::Ragged {
                path: path.to_path_buf(),
                line: row.line,
                expected: columns,
                got: row.cells.len(),
            });
        }
        for &c in &feature_cols {
            let cell = &row.cells[c];
            let Some(v) = parse_feature(cell) else {
                return Err(CsvError::NotNumeric {
                    path: path.to_path_buf(),
                    line: row.line,
                    column: c + 1,
                    cell: cell.clone(),
                });
            };
            features.push(v);
        }
        if let (Some(labels), Some(c)) = (labels.as_mut(), label_col) {
            let cell = &row.cells[c];
            let Some(label) = parse_label(cell) else {
                return Err(CsvError::BadLabel {
                    path: path.to_path_buf(),
                    line: row.line,
                    column: c + 1,
                    cell: cell.clone(),
                });
            };
            labels.push(label);
        }
        if let (Some(ids), Some(c)) = (client_ids.as_mut(), client_col) {
            ids.push(row.cells[c].trim().to_string());
        }
    }

    let feature_names = header.map(|names| feature_cols.iter().map(|&c| names[c].clone()).collect());
    Ok(Table { features, dim: feature_cols.len(), labels, client_ids, feature_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(text: &str, opts: &CsvOptions) -> Result<CsvData, CsvError> {
        let dir = tempfile::tempdir().unwrap();
        load_csv(&write(&dir, text), opts)
    }

    fn opts(label: Option<&str>, client: Option<&str>) -> CsvOptions {
        CsvOptions {
            header: HeaderMode::Auto,
            label_column: label.map(|s| s.parse().unwrap()),
            client_column: client.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn feature_only_files_keep_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a,b,c\n1,2,3\n\"4\",5,6\n");
        let (x, dim) = load_csv_features(&path, &CsvOptions::default()).unwrap();
        assert_eq!((x, dim), (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3));
        let path = write(&dir, "1,2\n3,oops\n");
        let e = load_csv_features(&path, &CsvOptions::default()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("oops"), "{e}");
    }

    #[test]
    fn column_ref_parses_digits_as_index() {
        assert_eq!("3".parse::<ColumnRef>().unwrap(), ColumnRef::Index(3));
        assert_eq!("007".parse::<ColumnRef>().unwrap(), ColumnRef::Index(7));
        assert_eq!("x3".parse::<ColumnRef>().unwrap(), ColumnRef::Name("x3".into()));
        assert_eq!("-1".parse::<ColumnRef>().unwrap(), ColumnRef::Name("-1".into()));
        assert_eq!("".parse::<ColumnRef>().unwrap(), ColumnRef::Name(String::new()));
    }

    #[test]
    fn header_is_detected_when_present() {
        let d = load("a,b,label\n1,2,0\n3.5,-4,2\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.dataset.len(), 2);
        assert_eq!(d.dataset.features(), &[1.0, 2.0, 3.5, -4.0]);
        assert_eq!(d.dataset.labels(), &[0, 2]);
        assert_eq!(d.dataset.num_classes(), 3);
        assert_eq!(d.feature_names, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(d.client_ids, None);
    }

    #[test]
    fn header_is_not_detected_on_numeric_first_row() {
        let d = load("1,2,0\r\n\r\n3,4,1.0\r\n\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.dataset.len(), 2);
        assert_eq!(d.dataset.labels(), &[0, 1]);
        assert_eq!(d.feature_names, None);
        // Forcing a header drops the first row.
        let o = CsvOptions { header: HeaderMode::Present, ..CsvOptions::default() };
        let d = load("1,2,0\n3,4,1\n", &o).unwrap();
        assert_eq!(d.dataset.len(), 1);
        assert_eq!(d.feature_names, Some(vec!["1".to_string(), "2".to_string()]));
    }

    #[test]
    fn label_column_by_name_and_by_index() {
        let text = "y,f1,f2\n4,0.5,1.5\n1,2.5,3.5\n";
        let by_name = load(text, &opts(Some("y"), None)).unwrap();
        let by_index = load(text, &opts(Some("0"), None)).unwrap();
        assert_eq!(by_name.dataset.labels(), &[4, 1]);
        assert_eq!(by_name.dataset.num_classes(), 5);
        assert_eq!(by_name.dataset.features(), &[0.5, 1.5, 2.5, 3.5]);
        assert_eq!(by_name.dataset, by_index.dataset);
    }

    #[test]
    fn client_column_is_kept_as_strings() {
        // No header: the client cells are not numbers but do not make the row a header.
        let d = load("alice,1,2,0\nbob,3,4,1\n\"carol, jr\",5,6,1\n", &opts(None, Some("0"))).unwrap();
        assert_eq!(d.feature_names, None);
        assert_eq!(d.client_ids, Some(vec!["alice".to_string(), "bob".to_string(), "carol, jr".to_string()]));
        assert_eq!(d.dataset.dim(), 2);
        assert_eq!(d.dataset.features(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

        let d = load("x,user,label\n1,u1,0\n2,u2,1\n", &opts(Some("label"), Some("user"))).unwrap();
        assert_eq!(d.client_ids, Some(vec!["u1".to_string(), "u2".to_string()]));
        assert_eq!(d.feature_names, Some(vec!["x".to_string()]));
    }

    #[test]
    fn quoted_fields_with_escapes_and_line_breaks() {
        let records = parse_records(Path::new("q.csv"), "\"a \"\"b\"\"\",\"x\ny\",3\n4,,\"\"\n").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].cells, vec!["a \"b\"", "x\ny", "3"]);
        assert_eq!(records[1].line, 3);
        assert_eq!(records[1].cells, vec!["4", "", ""]);
        // A quoted number is a number.
        let d = load("\"1.5\",\"2\"\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.dataset.features(), &[1.5]);
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let err = load("a,b,y\n1,2,0\n3,oops,1\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(&err, CsvError::NotNumeric { line: 3, column: 2, cell, .. } if cell == "oops"), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("data.csv: line 3, column 2: cell \"oops\""), "{msg}");
        let err = load("a,b,y\n1,NaN,0\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NotNumeric { line: 2, column: 2, .. }), "{err:?}");
        let err = load("a,b,y\n1,inf,0\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NotNumeric { .. }), "{err:?}");
    }

    #[test]
    fn ragged_row_is_an_error() {
        let err = load("1,2,0\n3,4\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Ragged { line: 2, expected: 3, got: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("expected 3 cells, got 2"), "{err}");
    }

    #[test]
    fn bad_labels_are_errors() {
        for bad in ["-1", "1.5", "x", "nan", "1e9"] {
            let err = load(&format!("1,0\n2,{bad}\n"), &CsvOptions::default()).unwrap_err();
            assert!(
                matches!(&err, CsvError::BadLabel { line: 2, column: 2, cell, .. } if cell == bad),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_and_out_of_range_columns_are_errors() {
        let text = "a,b,y\n1,2,0\n";
        let err = load(text, &opts(Some("z"), None)).unwrap_err();
        assert!(matches!(&err, CsvError::UnknownColumn { name, .. } if name == "z"), "{err:?}");
        assert!(err.to_string().contains("columns: a, b, y"), "{err}");
        let err = load(text, &opts(Some("3"), None)).unwrap_err();
        assert!(matches!(err, CsvError::ColumnOutOfRange { index: 3, columns: 3, .. }), "{err:?}");
        let err = load("1,2,0\n", &opts(Some("y"), None)).unwrap_err();
        assert!(matches!(err, CsvError::NameWithoutHeader { .. }), "{err:?}");
        let err = load(text, &opts(Some("y"), Some("2"))).unwrap_err();
        assert!(matches!(err, CsvError::SameColumn { index: 2, .. }), "{err:?}");
        let err = load("u,y\nx,0\n", &opts(None, Some("u"))).unwrap_err();
        assert!(matches!(err, CsvError::NoFeatures { columns: 2, .. }), "{err:?}");
    }

    #[test]
    fn empty_file_and_header_only_are_errors() {
        let err = load("", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Empty { .. }), "{err:?}");
        let err = load("\n \r\n\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Empty { .. }), "{err:?}");
        let err = load("a,b,y\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NoDataRows { .. }), "{err:?}");
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let err = load("a,b,y\n1,\"2,0\n3,4,1\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::UnterminatedQuote { line: 2, column: 2, .. }), "{err:?}");
        let err = load("a,b,y\n1,\"2\"x,0\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::AfterQuote { found: 'x', .. }), "{err:?}");
    }

    #[test]
    fn missing_and_non_utf8_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_csv(&dir.path().join("none.csv"), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("none.csv"), "{err}");
        let path = dir.path().join("bin.csv");
        std::fs::write(&path, b"1,2\n3,\xff\n").unwrap();
        let err = load_csv(&path, &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::NotUtf8 { line: 2, .. }), "{err:?}");
    }
}
