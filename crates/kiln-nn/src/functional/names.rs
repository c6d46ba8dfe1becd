//! Keras's type names for layer kinds: `dense` → `Dense`, `conv2d` → `Conv2D`, `max_pooling2d` →
//! `MaxPooling2D`, `lstm` → `LSTM` (what `summary` and error messages show).

/// Words Keras writes in capitals (or mixed case) inside type names.
const WORDS: [(&str, &str); 8] = [
    ("lstm", "LSTM"),
    ("gru", "GRU"),
    ("rnn", "RNN"),
    ("relu", "ReLU"),
    ("prelu", "PReLU"),
    ("elu", "ELU"),
    ("gelu", "GELU"),
    ("selu", "SELU"),
];

/// Activations Keras applies through its generic `Activation` layer (it has no layer of that name).
const GENERIC_ACTIVATIONS: [&str; 7] = [
    "sigmoid", "tanh", "linear", "gelu", "softplus", "silu", "swish",
];

/// Keras's type name of a layer kind: each `_`-separated word capitalised, a `1d`/`2d`/`3d` suffix
/// upper-cased, acronyms spelled as Keras spells them.
pub fn keras_type_name(kind: &str) -> String {
    if GENERIC_ACTIVATIONS.contains(&kind) {
        return "Activation".to_string();
    }
    kind.split('_')
        .map(|word| {
            if let Some((_, spelled)) = WORDS.iter().find(|(w, _)| *w == word) {
                return spelled.to_string();
            }
            let mut chars: Vec<char> = word.chars().collect();
            if let [.., digit, d] = chars.as_mut_slice()
                && digit.is_ascii_digit()
                && *d == 'd'
            {
                *d = 'D';
            }
            if let Some(first) = chars.first_mut() {
                *first = first.to_ascii_uppercase();
            }
            chars.into_iter().collect::<String>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::keras_type_name;

    #[test]
    fn kinds_read_as_keras_type_names() {
        for (kind, name) in [
            ("dense", "Dense"),
            ("conv2d", "Conv2D"),
            ("conv1d", "Conv1D"),
            ("max_pooling2d", "MaxPooling2D"),
            ("global_average_pooling1d", "GlobalAveragePooling1D"),
            ("batch_normalization", "BatchNormalization"),
            ("lstm", "LSTM"),
            ("simple_rnn", "SimpleRNN"),
            ("leaky_relu", "LeakyReLU"),
            ("relu", "ReLU"),
            ("softmax", "Softmax"),
            ("sigmoid", "Activation"),
            ("multi_head_attention", "MultiHeadAttention"),
            ("embedding", "Embedding"),
        ] {
            assert_eq!(keras_type_name(kind), name);
        }
    }
}
