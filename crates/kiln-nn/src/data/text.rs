//! Text to ids for `Embedding` layers (Keras's `TextVectorization`): a word-level tokenizer that
//! lowercases, drops HTML line breaks and punctuation, keeps the `max_tokens` most frequent words seen at
//! least `min_frequency` times, and pads or truncates every text to `length` ids. Id 0 is padding
//! (`Embedding::mask_zero`), 1 an out-of-vocabulary word, words count from 2. Saved as JSON beside a
//! model so raw strings can be classified after `load_model`.

use std::collections::HashMap;
use std::path::Path;

use kiln_device::{Error, Result};
use serde_json::{Value, json};

/// Padding's id.
pub const PAD: u32 = 0;
/// The id of a word outside the vocabulary.
pub const OUT_OF_VOCABULARY: u32 = 1;

/// A fitted (or empty) word vocabulary with its padding length.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenizer {
    max_tokens: usize,
    min_frequency: usize,
    /// 2: word pairs are tokens too (Keras's `ngrams=2`).
    ngrams: usize,
    length: usize,
    words: Vec<String>,
    index: HashMap<String, u32>,
}

/// The longest `length` a saved tokenizer may declare (each `encode` allocates that many ids).
pub const MAX_LENGTH: usize = 1 << 20;

impl Tokenizer {
    /// A tokenizer keeping at most `max_tokens` ids (padding and out-of-vocabulary included) and
    /// making every text `length` ids long; fit it on training texts before encoding.
    pub fn new(max_tokens: usize, length: usize) -> Self {
        Tokenizer {
            max_tokens,
            min_frequency: 1,
            ngrams: 1,
            length,
            words: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Keeps only words seen at least `count` times.
    pub fn min_frequency(mut self, count: usize) -> Self {
        self.min_frequency = count;
        self
    }

    /// Adds the word pairs of each text as tokens, like Keras's `ngrams=2`: a bag
    /// of embeddings then sees short phrases (`not good`).
    pub fn bigrams(mut self, yes: bool) -> Self {
        self.ngrams = if yes { 2 } else { 1 };
        self
    }

    /// The tokens of `text`: its words, each followed by the pair it starts when bigrams are on
    /// (interleaved, so a text cut to `length` keeps words and pairs alike).
    fn tokens(&self, text: &str) -> Vec<String> {
        let words = Tokenizer::words(text);
        if self.ngrams != 2 {
            return words;
        }
        let mut tokens = Vec::with_capacity(2 * words.len());
        for (i, word) in words.iter().enumerate() {
            tokens.push(word.clone());
            if let Some(next) = words.get(i + 1) {
                tokens.push(format!("{word} {next}"));
            }
        }
        tokens
    }

    /// The words of `text`: lowercased, `<br />` breaks and punctuation turned into spaces (an
    /// apostrophe inside a word stays: `don't`).
    pub fn words(text: &str) -> Vec<String> {
        let text = text
            .to_lowercase()
            .replace("<br />", " ")
            .replace("<br/>", " ");
        text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .map(|w| w.trim_matches('\''))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Builds the vocabulary from `texts`: the most frequent words first (ties alphabetical, so the
    /// ids do not depend on the order of the texts).
    pub fn fit<S: AsRef<str>>(&mut self, texts: &[S]) {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for word in self.tokens(text.as_ref()) {
                *counts.entry(word).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n >= self.min_frequency)
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.max_tokens.saturating_sub(2));
        self.words = ranked.into_iter().map(|(w, _)| w).collect();
        self.index = self
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 2))
            .collect();
    }

    /// Ids the encoder produces: the vocabulary, padding and out-of-vocabulary (`Embedding`'s
    /// `input_dim`).
    pub fn vocabulary_size(&self) -> usize {
        self.words.len() + 2
    }

    /// Ids per encoded text.
    pub fn length(&self) -> usize {
        self.length
    }

    /// `text` as exactly `length` ids: its first words, then padding.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .tokens(text)
            .iter()
            .take(self.length)
            .map(|w| self.index.get(w).copied().unwrap_or(OUT_OF_VOCABULARY))
            .collect();
        ids.resize(self.length, PAD);
        ids
    }

    /// Every text encoded, one after the other (`texts.len() × length` ids).
    pub fn encode_all<S: AsRef<str>>(&self, texts: &[S]) -> Vec<u32> {
        texts.iter().flat_map(|t| self.encode(t.as_ref())).collect()
    }

    /// The tokenizer as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "max_tokens": self.max_tokens,
            "min_frequency": self.min_frequency,
            "ngrams": self.ngrams,
            "length": self.length,
            "words": self.words,
        })
    }

    /// A tokenizer from [`Tokenizer::to_json`]'s JSON.
    pub fn from_json(value: &Value) -> Result<Tokenizer> {
        let bad = |what: &str| Error::InvalidData {
            op: "Tokenizer::from_json",
            message: format!(
                "{what} in {}",
                value.to_string().chars().take(120).collect::<String>()
            ),
        };
        let count = |key: &str| {
            value[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad(&format!("missing or non-integer \"{key}\"")))
        };
        let words: Vec<String> = value["words"]
            .as_array()
            .ok_or_else(|| bad("missing \"words\""))?
            .iter()
            .map(|w| w.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("a non-string word"))?;
        let length = count("length")?;
        if length > MAX_LENGTH {
            return Err(bad(&format!(
                "a length of {length} ids (more than {MAX_LENGTH}: a corrupt file)"
            )));
        }
        let mut tokenizer = Tokenizer::new(count("max_tokens")?, length)
            .min_frequency(count("min_frequency")?)
            .bigrams(value["ngrams"].as_u64() == Some(2));
        tokenizer.index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 2))
            .collect();
        tokenizer.words = words;
        Ok(tokenizer)
    }

    /// Writes the tokenizer to `path` as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json().to_string()).map_err(|e| Error::InvalidData {
            op: "Tokenizer::save",
            message: format!("{}: {e}", path.display()),
        })
    }

    /// Reads a tokenizer written by [`Tokenizer::save`].
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let bad = |e: String| Error::InvalidData {
            op: "Tokenizer::load",
            message: format!("{}: {e}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Tokenizer::from_json(&value)
    }
}

/// Columns `columns` (by header name) of the CSV file at `path`, one `Vec` of strings per column.
pub fn read_csv_columns(path: &Path, columns: &[&str]) -> Result<Vec<Vec<String>>> {
    let bad = |e: String| Error::InvalidData {
        op: "read_csv_columns",
        message: format!("{}: {e}", path.display()),
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let positions: Vec<usize> = columns
        .iter()
        .map(|c| {
            headers.iter().position(|h| h == *c).ok_or_else(|| {
                bad(format!(
                    "no column {c:?} (the header has {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect::<Result<_>>()?;
    let mut out = vec![Vec::new(); columns.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {e}", row + 2)))?;
        for (values, &p) in out.iter_mut().zip(&positions) {
            values.push(record.get(p).unwrap_or_default().to_string());
        }
    }
    Ok(out)
}
