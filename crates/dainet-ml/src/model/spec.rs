//! Which model to build, as a value that config files and model files can carry.

use super::{Cnn, Mlp, Model};
use dainet_core::text::excerpt;
use std::fmt;
use std::str::FromStr;

/// A built-in model architecture.
///
/// Its text form is written into model files (`model.safetensors` metadata key
/// `dainet.model`) so that `dainet predict` can rebuild the model:
/// `mlp:784-200-200-10` (input, hidden…, classes; `mlp:784-10` is logistic regression) and
/// `cnn:1x28x28-10` (channels x height x width, classes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A multi-layer perceptron with ReLU hidden layers.
    Mlp {
        /// Input features.
        input: usize,
        /// Hidden layer widths (empty: logistic regression).
        hidden: Vec<usize>,
        /// Output classes.
        classes: usize,
    },
    /// McMahan et al.'s CNN: conv5x5·32 → maxpool2 → conv5x5·64 → maxpool2 → fc512 → fc.
    Cnn {
        /// Input image `[channels, height, width]`; height and width divisible by 4.
        input: [usize; 3],
        /// Output classes.
        classes: usize,
    },
}

/// The most parameters a built-in model may have (8 GiB of `f32`).
pub const MAX_PARAMS: usize = 1 << 31;

/// A model spec that cannot be parsed or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid model spec {}: {reason} (expected e.g. mlp:784-200-200-10, mlp:784-10 or cnn:1x28x28-10)", excerpt(.text))]
pub struct ModelSpecError {
    text: String,
    reason: String,
}

impl ModelSpec {
    /// Builds the model.
    pub fn build(&self) -> Box<dyn Model> {
        match self {
            ModelSpec::Mlp { input, hidden, classes } => Box::new(Mlp::new(*input, hidden, *classes)),
            ModelSpec::Cnn { input, classes } => Box::new(Cnn::new(*input, *classes)),
        }
    }

    /// Checks sizes: every width positive, CNN images divisible by 4.
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        let err = |reason: &str| Err(ModelSpecError { text: self.to_string(), reason: reason.into() });
        if self.num_params().is_none_or(|n| n > MAX_PARAMS) {
            return err("more than 2^31 parameters (8 GiB); dainet's built-in models are not meant for that size");
        }
        match self {
            ModelSpec::Mlp { input, hidden, classes } => {
                if *input == 0 || *classes == 0 || hidden.contains(&0) {
                    return err("every layer width must be positive");
                }
            }
            ModelSpec::Cnn { input: [c, h, w], classes } => {
                if *c == 0 || *classes == 0 || *h == 0 || *w == 0 || h % 4 != 0 || w % 4 != 0 {
                    return err("channels and classes must be positive, height and width multiples of 4");
                }
            }
        }
        Ok(())
    }

    /// The number of parameters, or `None` if it overflows `usize`.
    pub fn num_params(&self) -> Option<usize> {
        let dense = |fan_in: usize, fan_out: usize| fan_in.checked_mul(fan_out)?.checked_add(fan_out);
        match self {
            ModelSpec::Mlp { input, hidden, classes } => {
                let mut dims = vec![*input];
                dims.extend_from_slice(hidden);
                dims.push(*classes);
                dims.windows(2).try_fold(0usize, |acc, w| acc.checked_add(dense(w[0], w[1])?))
            }
            ModelSpec::Cnn { input: [c, h, w], classes } => {
                let conv0 = dense(25usize.checked_mul(*c)?, 32)?;
                let conv1 = dense(25 * 32, 64)?;
                let fc0 = dense((h / 4).checked_mul(w / 4)?.checked_mul(64)?, 512)?;
                let fc1 = dense(512, *classes)?;
                conv0.checked_add(conv1)?.checked_add(fc0)?.checked_add(fc1)
            }
        }
    }

    /// Features per example the model takes.
    pub fn input_dim(&self) -> usize {
        match self {
            ModelSpec::Mlp { input, .. } => *input,
            ModelSpec::Cnn { input, .. } => input.iter().product(),
        }
    }

    /// Classes the model predicts.
    pub fn num_classes(&self) -> usize {
        match self {
            ModelSpec::Mlp { classes, .. } | ModelSpec::Cnn { classes, .. } => *classes,
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Mlp { input, hidden, classes } => {
                write!(f, "mlp:{input}")?;
                for h in hidden {
                    write!(f, "-{h}")?;
                }
                write!(f, "-{classes}")
            }
            ModelSpec::Cnn { input: [c, h, w], classes } => write!(f, "cnn:{c}x{h}x{w}-{classes}"),
        }
    }
}

impl FromStr for ModelSpec {
    type Err = ModelSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ModelSpecError { text: text.into(), reason: reason.into() };
        let num = |s: &str| s.parse::<usize>().map_err(|_| err(&format!("{} is not a whole number", excerpt(s))));
        let (kind, rest) = text.split_once(':').ok_or_else(|| err("missing ':'"))?;
        let spec = match kind {
            "mlp" => {
                let dims = rest.split('-').map(num).collect::<Result<Vec<_>, _>>()?;
                if dims.len() < 2 {
                    return Err(err("an MLP needs at least an input and an output width"));
                }
                let hidden = dims[1..dims.len() - 1].to_vec();
                ModelSpec::Mlp { input: dims[0], hidden, classes: dims[dims.len() - 1] }
            }
            "cnn" => {
                let (shape, classes) = rest.split_once('-').ok_or_else(|| err("missing '-classes'"))?;
                let dims = shape.split('x').map(num).collect::<Result<Vec<_>, _>>()?;
                let input: [usize; 3] = dims.try_into().map_err(|_| err("image shape must be CxHxW"))?;
                ModelSpec::Cnn { input, classes: num(classes)? }
            }
            other => return Err(err(&format!("unknown model kind {}", excerpt(other)))),
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for text in ["mlp:784-200-200-10", "mlp:784-10", "cnn:1x28x28-10"] {
            let spec: ModelSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn parameter_counts() {
        assert_eq!("mlp:784-200-200-10".parse::<ModelSpec>().unwrap().num_params(), Some(199_210));
        assert_eq!("mlp:784-10".parse::<ModelSpec>().unwrap().num_params(), Some(7_850));
        assert_eq!("cnn:1x28x28-10".parse::<ModelSpec>().unwrap().num_params(), Some(1_663_370));
        assert!("mlp:784-1000000000-10".parse::<ModelSpec>().is_err(), "too large to build");
    }

    #[test]
    fn bad_specs_are_refused() {
        for text in ["mlp:784", "mlp:784-x-10", "cnn:1x27x28-10", "rnn:3", "mlp:0-10", "cnn:28x28-10"] {
            assert!(text.parse::<ModelSpec>().is_err(), "{text}");
        }
    }
}
