//! Pictures where people would rather look than read, drawn with `plotters`: a [`History`]'s
//! training curves ([`History::plot`]), ROC and precision-recall curves of a binary classifier, and
//! histograms. The file's extension picks the format: `.png` or `.svg`.
//!
//! Text (titles, axis names, tick labels, legends) needs a TrueType font, read once from
//! `KILN_FONT` or the system's DejaVu Sans / Liberation Sans / Arial; without one the pictures are
//! drawn without text rather than not at all.

use std::path::Path;
use std::sync::OnceLock;

use kiln_device::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::threshold_counts;
use crate::{Evaluation, History};

/// Width and height of every picture, in pixels.
pub const SIZE: (u32, u32) = (800, 500);

/// Where a font for the pictures' text may be (the first that exists is used).
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Whether a font is registered for text (looked for once).
fn text() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let env = std::env::var("KILN_FONT").ok();
        env.iter()
            .map(String::as_str)
            .chain(FONT_PATHS)
            .filter_map(|path| std::fs::read(path).ok())
            .any(|bytes| {
                // Registered fonts live as long as the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
    })
}

fn failed(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::data("plot", format!("{}: {e}", path.display()))
}

/// One line of a chart: its name and points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A chart of lines, or of bars (`(left, right, height)`).
struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    lines: Vec<Line>,
    bars: Vec<(f64, f64, f64)>,
    /// Fixed axis ranges (else fitted to the data).
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
}

impl Chart {
    fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Chart {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            lines: Vec::new(),
            bars: Vec::new(),
            x_range: None,
            y_range: None,
        }
    }

    fn line(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.lines.push(Line {
            name: name.to_string(),
            points,
        });
        self
    }

    /// The axis ranges: given, else the data's (padded a little; never empty).
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let xs = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.bars.iter().flat_map(|b| [b.0, b.1]));
        let ys = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(self.bars.iter().flat_map(|b| [0.0, b.2]));
        let span = |values: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = values
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            if lo > hi {
                (0.0, 1.0)
            } else if lo == hi {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = (hi - lo) * 0.05;
                (lo - pad, hi + pad)
            }
        };
        (
            self.x_range.unwrap_or_else(|| span(&mut { xs })),
            self.y_range.unwrap_or_else(|| span(&mut { ys })),
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let ((x0, x1), (y0, y1)) = self.ranges();
        let text = text();
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if text {
            builder
                .caption(&self.title, ("sans-serif", 20))
                .x_label_area_size(40)
                .y_label_area_size(60);
        }
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(&self.x_label).y_desc(&self.y_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
        for &(left, right, height) in &self.bars {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(left, 0.0), (right, height)],
                    BLUE.mix(0.6).filled(),
                )))
                .map_err(e)?;
        }
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, line) in self.lines.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points = line.points.iter().copied().filter(|p| p.1.is_finite());
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(e)?
                .label(&line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        if text && !self.lines.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        Ok(())
    }
}

/// Draws `charts` one below the other into `path` (`.png` or `.svg`), [`SIZE`] wide and
/// [`SIZE`]`.1` high per chart.
fn save(charts: &[Chart], path: &Path) -> Result<()> {
    fn on<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        charts: &[Chart],
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (area, chart) in root.split_evenly((charts.len(), 1)).iter().zip(charts) {
            chart.draw(area)?;
        }
        root.present().map_err(|e| e.to_string())
    }
    let size = (SIZE.0, SIZE.1 * charts.len().max(1) as u32);
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let drawn = match extension.to_ascii_lowercase().as_str() {
        "png" => on(BitMapBackend::new(path, size).into_drawing_area(), charts),
        "svg" => on(SVGBackend::new(path, size).into_drawing_area(), charts),
        _ => {
            return Err(Error::argument(
                "plot",
                format!("{}: name the file .png or .svg", path.display()),
            ));
        }
    };
    drawn.map_err(|e| failed(path, e))
}

impl History {
    /// Draws the training curves to `path` (`.png` or `.svg`): one chart per logged value (loss,
    /// then each metric), training and validation per epoch. Returns an error for an empty history.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let Some(first) = self.train.first() else {
            return Err(Error::argument("plot", "the history has no epochs to draw"));
        };
        let series = |evaluations: &[Evaluation], pick: &dyn Fn(&Evaluation) -> Option<f32>| {
            evaluations
                .iter()
                .enumerate()
                .filter_map(|(epoch, e)| Some(((epoch + 1) as f64, f64::from(pick(e)?))))
                .collect::<Vec<_>>()
        };
        let names: Vec<String> = first.values().into_iter().map(|(name, _)| name).collect();
        let charts: Vec<Chart> = names
            .iter()
            .map(|name| {
                let pick = |e: &Evaluation| e.get(name);
                let mut chart =
                    Chart::new(name, "epoch", name).line("training", series(&self.train, &pick));
                if !self.validation.is_empty() {
                    chart = chart.line("validation", series(&self.validation, &pick));
                }
                chart
            })
            .collect();
        save(&charts, path)
    }
}

/// Draws the ROC curve (true-positive rate against false-positive rate, with the chance diagonal) of
/// `scores` for 0/1 `labels` to `path`; the title gives the area under it.
pub fn roc_curve(scores: &[f32], labels: &[u32], path: &Path) -> Result<()> {
    let c = curve_counts("roc_curve", scores, labels)?;
    let mut points = vec![(0.0, 0.0)];
    points.extend(c.at_thresholds.iter().map(|&(tp, fp)| {
        (
            fp as f64 / c.negatives as f64,
            tp as f64 / c.positives as f64,
        )
    }));
    let auc = crate::metrics::roc_auc(scores, labels).unwrap_or(f64::NAN);
    let mut chart = Chart::new(
        &format!("ROC curve (AUC {auc:.3})"),
        "false-positive rate",
        "true-positive rate",
    )
    .line("model", points)
    .line("chance", vec![(0.0, 0.0), (1.0, 1.0)]);
    chart.x_range = Some((0.0, 1.0));
    chart.y_range = Some((0.0, 1.0));
    save(&[chart], path)
}

/// Draws the precision-recall curve of `scores` for 0/1 `labels` to `path`, with the positive rate
/// as the chance line; the title gives the average precision.
pub fn precision_recall_curve(scores: &[f32], labels: &[u32], path: &Path) -> Result<()> {
    let c = curve_counts("precision_recall_curve", scores, labels)?;
    let points: Vec<(f64, f64)> = c
        .at_thresholds
        .iter()
        .map(|&(tp, fp)| (tp as f64 / c.positives as f64, tp as f64 / (tp + fp) as f64))
        .collect();
    let rate = c.positives as f64 / (c.positives + c.negatives) as f64;
    let ap = crate::metrics::average_precision(scores, labels).unwrap_or(f64::NAN);
    let mut chart = Chart::new(
        &format!("precision-recall curve (average precision {ap:.3})"),
        "recall",
        "precision",
    )
    .line("model", points)
    .line("chance", vec![(0.0, rate), (1.0, rate)]);
    chart.x_range = Some((0.0, 1.0));
    chart.y_range = Some((0.0, 1.0));
    save(&[chart], path)
}

/// A binary classifier's [`threshold_counts`] and class sizes.
struct Counts {
    at_thresholds: Vec<(usize, usize)>,
    positives: usize,
    negatives: usize,
}

/// [`threshold_counts`] with both classes required.
fn curve_counts(op: &'static str, scores: &[f32], labels: &[u32]) -> Result<Counts> {
    let positives = labels.iter().filter(|&&l| l != 0).count();
    let negatives = labels.len() - positives;
    if scores.len() != labels.len() || positives == 0 || negatives == 0 {
        return Err(Error::argument(
            op,
            format!(
                "needs one score per label and both classes, got {} scores, {positives} positive and \
                 {negatives} negative labels",
                scores.len()
            ),
        ));
    }
    Ok(Counts {
        at_thresholds: threshold_counts(scores, labels),
        positives,
        negatives,
    })
}

/// The most bins a histogram draws (more than the picture has pixels).
pub const MAX_BINS: usize = 4096;

/// Draws a histogram of `values` in `bins` equal bins (at most [`MAX_BINS`]) to `path`.
pub fn histogram(
    values: &[f32],
    bins: usize,
    title: &str,
    x_label: &str,
    path: &Path,
) -> Result<()> {
    let finite: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    if finite.is_empty() || bins == 0 || bins > MAX_BINS {
        return Err(Error::argument(
            "histogram",
            format!(
                "needs finite values and 1..={MAX_BINS} bins, got {} values and {bins} bins",
                values.len()
            ),
        ));
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let mut counts = vec![0usize; bins];
    for v in &finite {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let mut chart = Chart::new(title, x_label, "count");
    chart.bars = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let left = lo + i as f64 * width;
            (left, left + width, c as f64)
        })
        .collect();
    save(&[chart], path)
}
