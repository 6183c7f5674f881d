//! Errors as people need to read them: the whole cause chain on one line.
//!
//! Many errors describe only their own layer: reqwest's "error sending request for url (…)"
//! hides the "Connection refused" two sources down. [`Chain`] prints every source after a
//! colon, skipping a source whose text the message already contains (errors that embed their
//! source's text, as `#[error("…: {0}")]` does, would otherwise say it twice).

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources: `outer: middle: root cause`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown.push_str(&text);
            }
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn every_source_is_printed_after_a_colon() {
        let e = Layer(
            "error sending request for url (http://127.0.0.1:1/api/v1)",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            Chain(&e).to_string(),
            "error sending request for url (http://127.0.0.1:1/api/v1): client error (Connect): Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let e = Layer(
            "opening the sink: disk full",
            Some(Box::new(Layer("disk full", None))),
        );
        assert_eq!(Chain(&e).to_string(), "opening the sink: disk full");
    }
}
