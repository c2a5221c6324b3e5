//! IDX files, the format of MNIST: reading them, gzip-compressed or plain, into bytes and
//! into a [`Dataset`].
//!
//! This module owns the IDX header rules and the byte-to-feature conversion of fedtask-v1
//! (`shared/bench/fedtask-v1.md`, section Data). It guarantees that:
//! - a file is gzip-decoded exactly when it starts with the gzip magic `1f 8b`;
//! - only unsigned-byte IDX data (type code `0x08`) of 1 to 4 dimensions is accepted, and
//!   its payload must be exactly as long as the dimensions say (no shorter, no longer);
//! - no more than 1 GiB is ever allocated for a payload, whatever the header claims;
//! - every input becomes `f32(byte) / 255.0f32`, one IEEE float32 division, so features are
//!   bit-identical to every other fedtask-v1 implementation;
//! - malformed input of any kind is an [`IdxError`] naming the file, never a panic.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{Dataset, DatasetError};

/// The largest payload [`read_idx`] accepts: 1 GiB.
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// The magic number of an IDX file of unsigned-byte images `(n, height, width)`: 2051.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// The magic number of an IDX file of unsigned-byte labels `(n)`: 2049.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The only IDX type code supported: unsigned byte.
const TYPE_U8: u8 = 0x08;

/// An error reading an IDX file or building a dataset from two of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {cause}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not repeated as a source).
        cause: io::Error,
    },
    /// The file starts like gzip but does not decompress.
    #[error("{}: corrupt or truncated gzip data: {cause}", .path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error (in the message, not repeated as a source).
        cause: io::Error,
    },
    /// The (decompressed) file ends inside the header.
    #[error("{}: truncated IDX header: expected {expected} bytes, got {got}", .path.display())]
    ShortHeader {
        /// The file.
        path: PathBuf,
        /// Header bytes needed.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The first two bytes of the magic number are not zero.
    #[error("{}: bad IDX magic 0x{magic:08x}, expected 0x0000TTDD (two zero bytes, type, dimensions)", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read.
        magic: u32,
    },
    /// The type code is not `0x08` (unsigned byte).
    #[error("{}: IDX type code 0x{code:02x} is not supported, expected 0x08 (unsigned byte)", .path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The type code read.
        code: u8,
    },
    /// The number of dimensions is not between 1 and 4.
    #[error("{}: IDX file has {dims} dimensions, expected 1 to 4", .path.display())]
    BadRank {
        /// The file.
        path: PathBuf,
        /// The dimension count read.
        dims: u8,
    },
    /// The dimensions describe more than [`MAX_IDX_BYTES`].
    #[error("{}: IDX dimensions {dims:?} describe more than 1 GiB of data", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The dimensions read.
        dims: Vec<usize>,
    },
    /// The payload is shorter than the dimensions say.
    #[error("{}: truncated IDX data: dimensions {dims:?} need {expected} bytes, got {got}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The dimensions read.
        dims: Vec<usize>,
        /// Payload bytes needed.
        expected: usize,
        /// Payload bytes present.
        got: usize,
    },
    /// Bytes follow the payload.
    #[error("{}: {extra} unexpected bytes after the {expected} data bytes of dimensions {dims:?}", .path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The dimensions read.
        dims: Vec<usize>,
        /// Payload bytes expected.
        expected: usize,
        /// Bytes beyond them.
        extra: u64,
    },
    /// A valid IDX file of the wrong kind (e.g. labels where images were expected).
    #[error("{}: wrong IDX magic 0x{got:08x}, expected 0x{expected:08x} ({what})", .path.display())]
    WrongMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read.
        got: u32,
        /// The magic number expected.
        expected: u32,
        /// What the file should hold (`images` or `labels`).
        what: &'static str,
    },
    /// The images file and the labels file hold different numbers of examples.
    #[error("{} holds {images} images but {} holds {labels} labels", .images_path.display(), .labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Images in it.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Labels in it.
        labels: usize,
    },
    /// The images file holds no images, or images of zero pixels.
    #[error("{}: holds no data (dimensions {dims:?})", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// The dimensions read.
        dims: Vec<usize>,
    },
    /// The arrays read do not form a valid [`Dataset`].
    #[error("{}: {cause}", .path.display())]
    Dataset {
        /// The images file.
        path: PathBuf,
        /// The dataset error (in the message, not repeated as a source).
        cause: DatasetError,
    },
}

/// An IDX array of unsigned bytes: `data` holds the product of `dims` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (for images: `n, height, width`).
    pub dims: Vec<usize>,
    /// The values in file order.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The IDX magic number this array would be written with: `0x0000_08DD`.
    pub fn magic(&self) -> u32 {
        (u32::from(TYPE_U8) << 8) | self.dims.len() as u32
    }
}

/// Reads as many bytes as fit into `buf`, stopping early only at end of input.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads an unsigned-byte IDX file, gzip-compressed (detected by its first two bytes
/// `1f 8b`) or plain.
///
/// The header is a big-endian magic number `00 00 08 DD` (DD = 1 to 4 dimensions), then one
/// big-endian `u32` per dimension; the payload must hold exactly the product of the
/// dimensions in bytes, at most [`MAX_IDX_BYTES`].
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let io_err = |cause| IdxError::Io { path: path.to_path_buf(), cause };
    let mut file = File::open(path).map_err(io_err)?;
    let mut head = [0u8; 2];
    let n_head = read_full(&mut file, &mut head).map_err(io_err)?;
    let gzip = n_head == 2 && head == [0x1f, 0x8b];
    let chained = (&head[..n_head]).chain(file);
    if gzip {
        parse_idx(path, GzDecoder::new(chained), true)
    } else {
        parse_idx(path, chained, false)
    }
}

/// Parses an IDX stream; `gzip` says which error a failed read becomes.
fn parse_idx(path: &Path, mut reader: impl Read, gzip: bool) -> Result<IdxArray, IdxError> {
    let read_err = |source| {
        if gzip {
            IdxError::Gzip { path: path.to_path_buf(), cause: source }
        } else {
            IdxError::Io { path: path.to_path_buf(), cause: source }
        }
    };

    let mut magic_bytes = [0u8; 4];
    let got = read_full(&mut reader, &mut magic_bytes).map_err(read_err)?;
    if got < 4 {
        return Err(IdxError::ShortHeader { path: path.to_path_buf(), expected: 4, got });
    }
    let magic = u32::from_be_bytes(magic_bytes);
    if magic_bytes[0] != 0 || magic_bytes[1] != 0 {
        return Err(IdxError::BadMagic { path: path.to_path_buf(), magic });
    }
    if magic_bytes[2] != TYPE_U8 {
        return Err(IdxError::UnsupportedType { path: path.to_path_buf(), code: magic_bytes[2] });
    }
    let rank = magic_bytes[3];
    if !(1..=4).contains(&rank) {
        return Err(IdxError::BadRank { path: path.to_path_buf(), dims: rank });
    }

    let mut dim_bytes = [0u8; 16];
    let dim_len = 4 * usize::from(rank);
    let got = read_full(&mut reader, &mut dim_bytes[..dim_len]).map_err(read_err)?;
    if got < dim_len {
        return Err(IdxError::ShortHeader { path: path.to_path_buf(), expected: 4 + dim_len, got: 4 + got });
    }
    let dims: Vec<usize> =
        dim_bytes[..dim_len].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&total| total <= MAX_IDX_BYTES);
    let Some(expected) = expected else {
        return Err(IdxError::TooLarge { path: path.to_path_buf(), dims });
    };

    // The header's size is bounded, but the input may still be far shorter than it claims:
    // reserve at most 64 MiB up front and let the payload itself grow the buffer.
    let mut data = Vec::with_capacity(expected.min(1 << 26));
    let got = (&mut reader).take(expected as u64).read_to_end(&mut data).map_err(read_err)?;
    if got < expected {
        return Err(IdxError::Truncated { path: path.to_path_buf(), dims, expected, got });
    }
    // Counted, not stored; and at most 1 GiB of it, so a gzip stream that inflates without end
    // after the payload costs bounded time.
    let extra = io::copy(&mut reader.take(MAX_IDX_BYTES as u64), &mut io::sink()).map_err(read_err)?;
    if extra > 0 {
        return Err(IdxError::TrailingBytes { path: path.to_path_buf(), dims, expected, extra });
    }
    Ok(IdxArray { dims, data })
}

/// Parses an IDX file already in memory (gzip-compressed or plain); `name` stands for the
/// file in errors.
pub fn read_idx_bytes(name: &Path, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse_idx(name, GzDecoder::new(bytes), true)
    } else {
        parse_idx(name, bytes, false)
    }
}

/// Checks that `array`, read from `path`, has the magic number `expected`.
fn expect_magic(path: &Path, array: IdxArray, expected: u32, what: &'static str) -> Result<IdxArray, IdxError> {
    let got = array.magic();
    if got != expected {
        return Err(IdxError::WrongMagic { path: path.to_path_buf(), got, expected, what });
    }
    Ok(array)
}

/// Loads an image dataset from an IDX images file `(n, height, width)` (magic 2051) and an
/// IDX labels file `(n)` (magic 2049), example `i` being image `i` with label `i`.
///
/// Each pixel becomes `f32(byte) / 255.0f32`. The dataset has 10 classes when every label is
/// below 10 (MNIST-style files where a digit happens to be missing keep 10 classes), and
/// `max + 1` otherwise. Its image shape is `[1, height, width]`.
pub fn load_idx_dataset(images: &Path, labels: &Path) -> Result<Dataset, IdxError> {
    idx_dataset((images, read_idx(images)?), (labels, read_idx(labels)?))
}

/// Builds the dataset of [`load_idx_dataset`] from arrays already read, each with the path
/// (or name) it came from.
pub fn idx_dataset(images: (&Path, IdxArray), labels: (&Path, IdxArray)) -> Result<Dataset, IdxError> {
    let image_array = expect_magic(images.0, images.1, IMAGES_MAGIC, "images")?;
    let label_array = expect_magic(labels.0, labels.1, LABELS_MAGIC, "labels")?;
    let (images, labels) = (images.0, labels.0);
    let (n, h, w) = (image_array.dims[0], image_array.dims[1], image_array.dims[2]);
    let n_labels = label_array.dims[0];
    if n != n_labels {
        return Err(IdxError::CountMismatch {
            images_path: images.to_path_buf(),
            images: n,
            labels_path: labels.to_path_buf(),
            labels: n_labels,
        });
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(IdxError::Empty { path: images.to_path_buf(), dims: image_array.dims });
    }
    let features: Vec<f32> = image_array.data.iter().map(|&b| f32::from(b) / 255.0f32).collect();
    let label_values: Vec<u32> = label_array.data.iter().map(|&b| u32::from(b)).collect();
    let max_label = label_values.iter().copied().max().unwrap_or(0) as usize;
    let num_classes = if max_label < 10 { 10 } else { max_label + 1 };
    let dataset = Dataset::new(features, label_values, h * w, num_classes)
        .map_err(|source| IdxError::Dataset { path: images.to_path_buf(), cause: source })?;
    Ok(dataset.with_image_shape([1, h, w]))
}

/// The bundled MNIST subset's files under `root`: `(images, labels)`, that is
/// `root/mnist10k-images-idx3-ubyte.gz` and `root/mnist10k-labels-idx1-ubyte.gz`.
pub fn mnist_default_paths(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("mnist10k-images-idx3-ubyte.gz"), root.join("mnist10k-labels-idx1-ubyte.gz"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_truncation_and_random_corruption_is_an_error_not_a_panic() {
        let mut plain = vec![0, 0, 8, 1, 0, 0, 0, 40];
        plain.extend((0..40).map(|i| (i % 10) as u8));
        let name = Path::new("fuzz.idx");
        assert_eq!(read_idx_bytes(name, &plain).unwrap().dims, vec![40]);
        for len in 0..plain.len() {
            assert!(read_idx_bytes(name, &plain[..len]).is_err(), "truncated to {len}");
        }
        let gz = std::fs::read(Path::new(MNIST_DIR).join("mnist10k-labels-idx1-ubyte.gz")).unwrap();
        let mut g = dainet_core::SplitMix64::new(9);
        for round in 0..600 {
            let mut bytes = if round % 2 == 0 { plain.clone() } else { gz.clone() };
            for _ in 0..1 + g.next_u64() % 4 {
                let i = (g.next_u64() % bytes.len() as u64) as usize;
                bytes[i] = g.next_u64() as u8;
            }
            let cut = (g.next_u64() % (bytes.len() as u64 + 1)) as usize;
            let _ = read_idx_bytes(name, &bytes[..cut.max(bytes.len() / 2)]);
            let _ = read_idx_bytes(name, &bytes);
        }
    }

    const MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist/");

    fn load_mnist() -> Dataset {
        let (images, labels) = mnist_default_paths(Path::new(MNIST_DIR));
        load_idx_dataset(&images, &labels).expect("bundled MNIST loads")
    }

    /// The bytes of a plain IDX file with `magic`, `dims` and `data`.
    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    // fedtask-v1, Data: 10,000 images of 28x28 and the label counts of both splits.
    #[test]
    fn bundled_mnist_matches_fedtask_v1() {
        let d = load_mnist();
        assert_eq!(d.len(), 10_000);
        assert_eq!(d.dim(), 784);
        assert_eq!(d.num_classes(), 10);
        assert_eq!(d.image_shape(), Some([1, 28, 28]));
        assert_eq!(d.label_counts(0..8000), vec![785, 900, 814, 831, 779, 692, 801, 858, 747, 793]);
        assert_eq!(d.label_counts(8000..10_000), vec![216, 227, 177, 201, 201, 171, 213, 212, 197, 185]);
    }

    // fedtask-v1, Test vectors: "Σ of all training-pool inputs (f64)".
    #[test]
    fn training_pool_input_sum_matches_fedtask_v1() {
        let d = load_mnist();
        let sum: f64 = d.features()[..8000 * 784].iter().map(|&v| f64::from(v)).sum();
        assert!((sum - 820246.6776325232).abs() < 1e-6, "sum {sum}");
        assert!(d.features().iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn plain_and_gzip_files_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_bytes(IMAGES_MAGIC, &[2, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]);
        let plain = read_idx(&write(&dir, "a.idx", &raw)).unwrap();
        let gz = read_idx(&write(&dir, "a.idx.gz", &gzip(&raw))).unwrap();
        assert_eq!(plain.dims, vec![2, 2, 3]);
        assert_eq!(plain.data[11], 255);
        assert_eq!(plain, gz);
    }

    #[test]
    fn plain_dataset_converts_bytes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let images = write(&dir, "i", &idx_bytes(IMAGES_MAGIC, &[2, 1, 2], &[0, 255, 1, 128]));
        let labels = write(&dir, "l", &idx_bytes(LABELS_MAGIC, &[2], &[3, 12]));
        let d = load_idx_dataset(&images, &labels).unwrap();
        assert_eq!(d.features(), &[0.0, 1.0, 1.0f32 / 255.0, 128.0f32 / 255.0]);
        assert_eq!(d.labels(), &[3, 12]);
        assert_eq!(d.num_classes(), 13);
        assert_eq!(d.image_shape(), Some([1, 1, 2]));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.idx");
        let err = read_idx(&path).unwrap_err();
        assert!(matches!(err, IdxError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.idx"), "{err}");
    }

    #[test]
    fn truncated_data_and_header_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_bytes(LABELS_MAGIC, &[10], &[1, 2, 3]);
        let err = read_idx(&write(&dir, "short.idx", &raw)).unwrap_err();
        assert!(matches!(err, IdxError::Truncated { expected: 10, got: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("need 10 bytes, got 3"), "{err}");
        let err = read_idx(&write(&dir, "short.gz", &gzip(&raw))).unwrap_err();
        assert!(matches!(err, IdxError::Truncated { expected: 10, got: 3, .. }), "{err:?}");

        let err = read_idx(&write(&dir, "hdr.idx", &[0, 0, 8, 3, 0, 0])).unwrap_err();
        assert!(matches!(err, IdxError::ShortHeader { expected: 16, got: 6, .. }), "{err:?}");
        let err = read_idx(&write(&dir, "empty.idx", &[])).unwrap_err();
        assert!(matches!(err, IdxError::ShortHeader { expected: 4, got: 0, .. }), "{err:?}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_bytes(LABELS_MAGIC, &[2], &[1, 2, 3, 4]);
        let err = read_idx(&write(&dir, "long.idx", &raw)).unwrap_err();
        assert!(matches!(err, IdxError::TrailingBytes { extra: 2, .. }), "{err:?}");
    }

    #[test]
    fn bad_headers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_idx(&write(&dir, "m", &idx_bytes(0x0100_0801, &[1], &[0]))).unwrap_err();
        assert!(matches!(err, IdxError::BadMagic { magic: 0x0100_0801, .. }), "{err:?}");
        let err = read_idx(&write(&dir, "t", &idx_bytes(0x0000_0D01, &[1], &[0; 4]))).unwrap_err();
        assert!(matches!(err, IdxError::UnsupportedType { code: 0x0d, .. }), "{err:?}");
        assert!(err.to_string().contains("0x0d"), "{err}");
        let err = read_idx(&write(&dir, "r", &idx_bytes(0x0000_0805, &[1; 5], &[0]))).unwrap_err();
        assert!(matches!(err, IdxError::BadRank { dims: 5, .. }), "{err:?}");
        let err = read_idx(&write(&dir, "r0", &idx_bytes(0x0000_0800, &[], &[]))).unwrap_err();
        assert!(matches!(err, IdxError::BadRank { dims: 0, .. }), "{err:?}");
        // 2^32-1 cubed overflows; 65536^2 is 4 GiB: both refused before allocating.
        let big = idx_bytes(0x0000_0803, &[u32::MAX; 3], &[]);
        let err = read_idx(&write(&dir, "big", &big)).unwrap_err();
        assert!(matches!(err, IdxError::TooLarge { .. }), "{err:?}");
        let big = idx_bytes(0x0000_0802, &[65536, 65536], &[]);
        let err = read_idx(&write(&dir, "big2", &big)).unwrap_err();
        assert!(matches!(err, IdxError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn wrong_magic_for_the_role_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let labels = write(&dir, "labels.idx", &idx_bytes(LABELS_MAGIC, &[1], &[0]));
        let err = load_idx_dataset(&labels, &labels).unwrap_err();
        assert!(matches!(err, IdxError::WrongMagic { got: 0x801, expected: 0x803, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{}: wrong IDX magic 0x00000801, expected 0x00000803 (images)", labels.display())
        );
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip(&idx_bytes(LABELS_MAGIC, &[100], &[7; 100]));
        let mid = bytes.len() / 2;
        for b in &mut bytes[10..mid] {
            *b ^= 0x5a;
        }
        let path = write(&dir, "bad.gz", &bytes);
        let err = read_idx(&path).unwrap_err();
        assert!(matches!(err, IdxError::Gzip { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.gz"), "{err}");
        // Just the gzip magic and nothing else.
        let err = read_idx(&write(&dir, "stub.gz", &[0x1f, 0x8b])).unwrap_err();
        assert!(matches!(err, IdxError::Gzip { .. } | IdxError::ShortHeader { .. }), "{err:?}");
    }

    #[test]
    fn image_and_label_counts_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let images = write(&dir, "imgs", &idx_bytes(IMAGES_MAGIC, &[3, 1, 1], &[0, 1, 2]));
        let labels = write(&dir, "lbls", &idx_bytes(LABELS_MAGIC, &[2], &[0, 1]));
        let err = load_idx_dataset(&images, &labels).unwrap_err();
        assert!(matches!(err, IdxError::CountMismatch { images: 3, labels: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("imgs") && msg.contains("lbls"), "{msg}");
    }

    #[test]
    fn empty_image_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let images = write(&dir, "imgs", &idx_bytes(IMAGES_MAGIC, &[0, 28, 28], &[]));
        let labels = write(&dir, "lbls", &idx_bytes(LABELS_MAGIC, &[0], &[]));
        let err = load_idx_dataset(&images, &labels).unwrap_err();
        assert!(matches!(err, IdxError::Empty { .. }), "{err:?}");
    }
}
