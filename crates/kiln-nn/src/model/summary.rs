//! Keras's `model.summary()`: each layer with its Keras type name, output shape and parameter count
//! (buffers included), then total, trainable and non-trainable counts. Functional models also list
//! their inputs and what each layer is connected to.

use super::Model;
use super::graph::LayerRef;
use crate::functional::keras_type_name;
use crate::shape::batched;

/// Values in a list of parameters or buffers.
fn count(vars: &[(&'static str, kiln_autograd::Var)]) -> usize {
    vars.iter().map(|(_, v)| v.tensor().numel()).sum()
}

impl Model {
    /// Keras's summary: each layer, its output shape and parameter count; shared layers once;
    /// frozen layers' parameters and every buffer count as non-trainable.
    pub fn summary(&self) -> String {
        let connected = !self.sequential;
        let widths = if connected {
            [34, 22, 11, 28]
        } else {
            [34, 22, 9, 0]
        };
        let width: usize = widths.iter().sum();
        let row = |cells: [&str; 4]| {
            let mut line = format!(
                "{:<a$}{:<b$}{:>c$}",
                cells[0],
                cells[1],
                cells[2],
                a = widths[0],
                b = widths[1],
                c = widths[2]
            );
            if connected {
                line += &format!("  {}", cells[3]);
            }
            line.trim_end().to_string() + "\n"
        };
        let rule = "_".repeat(width);
        let double = "=".repeat(width);
        let mut out = format!("Model: \"{}\"\n{rule}\n", self.name);
        out += &row(["Layer (type)", "Output Shape", "Param #", "Connected to"]);
        out += &format!("{double}\n");
        if connected {
            for input in &self.graph.inputs {
                out += &row([
                    &format!("{} (InputLayer)", input.name),
                    &batched(input.node.shape()),
                    "0",
                    "-",
                ]);
            }
        }
        let (mut total, mut trainable) = (0, 0);
        for (index, layer) in self.graph.layers.iter().enumerate() {
            let (params, buffers, frozen) = match &layer.layer {
                LayerRef::Single(l) => (
                    count(&l.parameters()),
                    count(&l.buffers()),
                    !l.is_trainable(),
                ),
                LayerRef::Merge(_) => (0, 0, false),
            };
            total += params + buffers;
            if !frozen {
                trainable += params;
            }
            let calls: Vec<_> = self
                .graph
                .steps
                .iter()
                .filter(|s| s.layer == index)
                .collect();
            let shape = calls
                .first()
                .map_or_else(String::new, |s| batched(s.node.shape()));
            let sources: Vec<String> = calls
                .iter()
                .map(|s| {
                    s.args
                        .iter()
                        .map(|&a| self.source_name(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            out += &row([
                &format!("{} ({})", layer.name, keras_type_name(layer.layer.kind())),
                &shape,
                &(params + buffers).to_string(),
                sources.first().map_or("", String::as_str),
            ]);
            for more in sources.iter().skip(1) {
                out += &row(["", "", "", more]);
            }
        }
        out += &format!(
            "{double}\nTotal params: {total}\nTrainable params: {trainable}\nNon-trainable params: {}\n{rule}\n",
            total - trainable
        );
        out
    }

    /// Keras's `layer[call][0]` for the value in `slot`.
    fn source_name(&self, slot: usize) -> String {
        match self.graph.step_of(slot) {
            None => format!("{}[0][0]", self.graph.inputs[slot].name),
            Some(step) => {
                let call = self
                    .graph
                    .steps
                    .iter()
                    .take_while(|s| s.node.id() != step.node.id())
                    .filter(|s| s.layer == step.layer)
                    .count();
                format!("{}[{call}][0]", self.graph.layers[step.layer].name)
            }
        }
    }
}
