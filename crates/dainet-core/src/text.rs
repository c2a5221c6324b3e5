//! Quoting untrusted text in error messages.
//!
//! An error that names a bad value helps the user find it, but a value can be anything a file
//! holds — a 50 MB TOML string, a CSV cell that swallowed the rest of the file through an
//! unclosed quote, a model spec in a damaged header. [`excerpt`] quotes at most
//! [`EXCERPT_CHARS`] characters of it and says how long the whole was, so an error message stays
//! a line whatever the input.

use std::fmt;

/// The most characters of a value an error message quotes.
pub const EXCERPT_CHARS: usize = 64;

/// `value` quoted (as `{:?}` would) when it has at most [`EXCERPT_CHARS`] characters; otherwise
/// its first [`EXCERPT_CHARS`] characters quoted, then `… (N bytes)`.
pub fn excerpt(value: &str) -> Excerpt<'_> {
    Excerpt(value)
}

/// A value quoted for an error message; see [`excerpt`].
#[derive(Clone, Copy, Debug)]
pub struct Excerpt<'a>(&'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(EXCERPT_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// `message` itself when it has at most `max` characters, else its first `max` characters and
/// `… (N bytes)`: for messages of other libraries that may quote a value whole (serde's
/// `invalid type: string "…"`).
pub fn shorten(message: &str, max: usize) -> String {
    match message.char_indices().nth(max) {
        None => message.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &message[..cut], message.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(excerpt("abc").to_string(), "\"abc\"");
        assert_eq!(excerpt(&"x".repeat(EXCERPT_CHARS)).to_string(), format!("{:?}", "x".repeat(EXCERPT_CHARS)));
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary_and_measured() {
        let long = "é".repeat(50_000_000 / 2);
        let text = excerpt(&long).to_string();
        assert_eq!(text, format!("{:?}… (50000000 bytes)", "é".repeat(EXCERPT_CHARS)));
        assert!(text.len() < 200);
        assert_eq!(shorten("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
