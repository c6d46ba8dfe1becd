//! Pictures (`kiln::nn::plot`): a training history, ROC and precision-recall curves and a histogram
//! are written as valid PNG and SVG files of the documented size; bad requests are errors.

use std::path::{Path, PathBuf};

use kiln::nn::plot::{SIZE, histogram, precision_recall_curve, roc_curve};
use kiln::prelude::*;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-plots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height of a PNG file (its IHDR chunk), after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Width and height an SVG file declares, after checking it is one whole SVG document.
fn svg_size(path: &Path) -> (u32, u32) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("<svg") && text.trim_end().ends_with("</svg>"),
        "{text:.200}"
    );
    let attribute = |name: &str| -> u32 {
        let start = text.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        text[start..].split('"').next().unwrap().parse().unwrap()
    };
    (attribute("width"), attribute("height"))
}

fn evaluation(loss: f32, accuracy: f32) -> Evaluation {
    Evaluation {
        loss,
        outputs: Vec::new(),
        metrics: vec![(Metric::Accuracy, accuracy)],
    }
}

#[test]
fn a_history_draws_one_chart_per_logged_value_as_png_and_svg() {
    let history = History {
        train: vec![
            evaluation(0.9, 0.6),
            evaluation(0.5, 0.8),
            evaluation(0.3, 0.9),
        ],
        validation: vec![
            evaluation(1.0, 0.55),
            evaluation(0.7, 0.7),
            evaluation(0.6, 0.75),
        ],
    };
    let dir = scratch();
    // loss and accuracy: two charts, one below the other
    history.plot(&dir.join("history.png")).unwrap();
    assert_eq!(png_size(&dir.join("history.png")), (SIZE.0, 2 * SIZE.1));
    history.plot(&dir.join("history.svg")).unwrap();
    assert_eq!(svg_size(&dir.join("history.svg")), (SIZE.0, 2 * SIZE.1));
    let svg = std::fs::read_to_string(dir.join("history.svg")).unwrap();
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no curve drawn"
    );

    let e = History::default().plot(&dir.join("empty.png")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Argument, "{e}");
    let e = history.plot(&dir.join("history.jpg")).unwrap_err();
    assert!(e.to_string().contains(".png or .svg"), "{e}");
}

#[test]
fn curves_and_histograms_are_written_at_the_documented_size() {
    let dir = scratch();
    let scores: Vec<f32> = (0..200).map(|i| ((i * 37) % 100) as f32 / 100.0).collect();
    let labels: Vec<u32> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| u32::from(*s + (i % 3) as f32 * 0.2 > 0.6))
        .collect();
    for extension in ["png", "svg"] {
        let roc = dir.join(format!("roc.{extension}"));
        let pr = dir.join(format!("pr.{extension}"));
        let errors = dir.join(format!("errors.{extension}"));
        roc_curve(&scores, &labels, &roc).unwrap();
        precision_recall_curve(&scores, &labels, &pr).unwrap();
        histogram(&scores, 20, "rating errors", "error", &errors).unwrap();
        for path in [roc, pr, errors] {
            let size = if extension == "png" {
                png_size(&path)
            } else {
                svg_size(&path)
            };
            assert_eq!(size, SIZE, "{}", path.display());
        }
    }
    let e = roc_curve(&scores, &vec![1; 200], &dir.join("one-class.png")).unwrap_err();
    assert!(e.to_string().contains("both classes"), "{e}");
    let e = histogram(&[f32::NAN], 10, "t", "x", &dir.join("nan.png")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Argument, "{e}");
}
