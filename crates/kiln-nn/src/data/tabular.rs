//! Tabular data (what pandas and scikit-learn's `ColumnTransformer` do for a Keras user): a CSV read
//! into typed columns with missing values, a transformer fitted on the training rows — numeric columns
//! imputed with their median (plus a missing-indicator column where values were missing) and
//! standardised, categorical columns one-hot with a slot for unseen or missing categories — stratified
//! splits and balanced class weights. The transformer converts to and from JSON, to keep beside a model.

use std::collections::HashMap;
use std::path::Path;

use kiln_device::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

/// One column of a [`Table`]: numbers, or category names; `None` where the cell is empty or `NA`.
#[derive(Debug, Clone, PartialEq)]
pub enum TableColumn {
    /// Every present value parses as a number.
    Numeric(Vec<Option<f32>>),
    /// Anything else.
    Categorical(Vec<Option<String>>),
}

/// A CSV file as named, typed columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names, from the header.
    pub names: Vec<String>,
    /// The columns, in the header's order.
    pub columns: Vec<TableColumn>,
    /// Rows.
    pub rows: usize,
}

/// Whether a cell means "no value" (empty, `NA`, `NaN`, `null`, `none`, `N/A` or `?`, any case).
fn missing(cell: &str) -> bool {
    let cell = cell.trim().to_ascii_lowercase();
    matches!(
        cell.as_str(),
        "" | "na" | "nan" | "null" | "none" | "n/a" | "?"
    )
}

/// How a column's cells are read ([`Table::read_csv_typed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Numbers; a present cell that is not one is an error naming file, row and column.
    Numeric,
    /// Category names, even when they look like numbers (postcodes, codes, years as labels).
    Categorical,
}

impl Table {
    /// Reads a CSV with a header; a column is numeric when every present cell parses as a number
    /// (cells that are empty or `NA`, `nan`, `null`, `none`, `n/a`, `?` are missing).
    pub fn read_csv(path: &Path) -> Result<Table> {
        Table::read_csv_typed(path, &[])
    }

    /// [`Table::read_csv`] with the types of some columns declared instead of inferred: a
    /// non-number in a declared numeric column is an error naming file, row, column and value, and a
    /// declared categorical column keeps its cells as text. Declared names must be in the header.
    pub fn read_csv_typed(path: &Path, declared: &[(&str, ColumnType)]) -> Result<Table> {
        let bad = |e: String| Error::InvalidData {
            op: "Table::read_csv",
            message: format!("{}: {e}", path.display()),
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        if names.is_empty() || names.iter().all(|n| n.trim().is_empty()) {
            return Err(bad("empty file: no header row".to_string()));
        }
        if let Some((i, name)) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(bad(format!("column {} repeats the name {name:?}", i + 1)));
        }
        let argument = |message: String| {
            Error::argument("Table::read_csv", format!("{}: {message}", path.display()))
        };
        if let Some((name, _)) = declared.iter().find(|(n, _)| !names.iter().any(|h| h == n)) {
            return Err(argument(format!(
                "no column {name:?} to declare (the header has {})",
                names.join(", ")
            )));
        }
        if let Some((i, (name, _))) = declared
            .iter()
            .enumerate()
            .find(|(i, (n, _))| declared[..*i].iter().any(|(m, _)| m == n))
        {
            return Err(argument(format!(
                "column {name:?} is declared twice (declaration {})",
                i + 1
            )));
        }
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        for (row, record) in reader.records().enumerate() {
            // a row with another number of fields is an error of the (non-flexible) reader
            let record = record.map_err(|e| bad(format!("row {}: {e}", row + 2)))?;
            for (column, cell) in cells.iter_mut().zip(record.iter()) {
                column.push(cell.to_string());
            }
        }
        let rows = cells.first().map_or(0, Vec::len);
        if rows == 0 {
            return Err(bad("a header but no rows".to_string()));
        }
        let columns = cells
            .into_iter()
            .zip(&names)
            .map(|(column, name)| -> Result<TableColumn> {
                let kind = declared.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
                let categorical = || {
                    TableColumn::Categorical(
                        column
                            .iter()
                            .map(|c| (!missing(c)).then(|| c.trim().to_string()))
                            .collect(),
                    )
                };
                if kind == Some(ColumnType::Categorical) {
                    return Ok(categorical());
                }
                // Every present cell as a number, or the first that is not one.
                let mut values = Vec::with_capacity(column.len());
                for (row, cell) in column.iter().enumerate() {
                    if missing(cell) {
                        values.push(None);
                        continue;
                    }
                    match cell.trim().parse::<f32>() {
                        Ok(v) => values.push(Some(v)),
                        Err(_) if kind == Some(ColumnType::Numeric) => {
                            return Err(bad(format!(
                                "row {}, column {name:?}: {cell:?} is not a number (the column is \
                                 declared numeric)",
                                row + 2
                            )));
                        }
                        // Text somewhere: an inferred column is categorical.
                        Err(_) => return Ok(categorical()),
                    }
                }
                if let Some((row, v)) = values
                    .iter()
                    .enumerate()
                    .find_map(|(row, v)| v.filter(|v| !v.is_finite()).map(|v| (row, v)))
                {
                    return Err(bad(format!(
                        "row {}, column {name:?}: the number {v} is not finite",
                        row + 2
                    )));
                }
                Ok(TableColumn::Numeric(values))
            })
            .collect::<Result<_>>()?;
        Ok(Table {
            names,
            columns,
            rows,
        })
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Result<&TableColumn> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| {
                Error::argument(
                    "Table::column",
                    format!("no column {name:?} (columns: {})", self.names.join(", ")),
                )
            })
    }

    /// 0/1 labels: 1 where column `name` equals `positive` (as text, or as a number).
    pub fn binary_labels(&self, name: &str, positive: &str) -> Result<Vec<u32>> {
        let labels: Vec<Option<u32>> = match self.column(name)? {
            TableColumn::Categorical(values) => values
                .iter()
                .map(|v| v.as_ref().map(|v| u32::from(v == positive)))
                .collect(),
            TableColumn::Numeric(values) => {
                let target: f32 = positive.parse().map_err(|_| {
                    Error::argument(
                        "binary_labels",
                        format!("column {name:?} is numeric; {positive:?} is not a number"),
                    )
                })?;
                values
                    .iter()
                    .map(|v| v.map(|v| u32::from(v == target)))
                    .collect()
            }
        };
        let labels: Vec<u32> = labels
            .iter()
            .enumerate()
            .map(|(row, l)| {
                l.ok_or_else(|| Error::InvalidData {
                    op: "binary_labels",
                    message: format!("row {} has no {name:?} value", row + 2),
                })
            })
            .collect::<Result<_>>()?;
        let positives = labels.iter().filter(|&&l| l == 1).count();
        if positives == 0 || positives == labels.len() {
            return Err(Error::InvalidData {
                op: "binary_labels",
                message: format!(
                    "{positives} of {} rows have {name:?} = {positive:?}: both classes are needed \
                     (check the spelling of the positive value)",
                    labels.len()
                ),
            });
        }
        Ok(labels)
    }
}

/// `Err` unless every row index is inside the table.
fn check_rows(op: &'static str, table: &Table, rows: &[usize]) -> Result<()> {
    match rows.iter().find(|&&r| r >= table.rows) {
        Some(r) => Err(Error::argument(
            op,
            format!("row {r} is outside the table's {} rows", table.rows),
        )),
        None => Ok(()),
    }
}

/// How one feature column is turned into numbers.
#[derive(Debug, Clone, PartialEq)]
enum Encoding {
    /// Median-imputed, standardised; a 0/1 indicator column follows when training rows had gaps.
    Numeric {
        median: f32,
        mean: f32,
        std: f32,
        indicator: bool,
    },
    /// One-hot over the training categories, then one slot for unseen or missing.
    OneHot { categories: Vec<String> },
}

/// Feature columns fitted on training rows and applied to any rows (scikit-learn's
/// `ColumnTransformer` with `SimpleImputer`, `StandardScaler` and `OneHotEncoder`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnTransformer {
    features: Vec<(String, Encoding)>,
}

impl ColumnTransformer {
    /// Fits every column of `table` but `exclude` (the target) on the rows `rows`.
    pub fn fit(table: &Table, exclude: &[&str], rows: &[usize]) -> Result<ColumnTransformer> {
        if rows.is_empty() {
            return Err(Error::data("ColumnTransformer::fit", "no training rows"));
        }
        check_rows("ColumnTransformer::fit", table, rows)?;
        let mut features = Vec::new();
        for (name, column) in table.names.iter().zip(&table.columns) {
            if exclude.contains(&name.as_str()) {
                continue;
            }
            let encoding = match column {
                TableColumn::Numeric(values) => {
                    let mut present: Vec<f32> = rows.iter().filter_map(|&r| values[r]).collect();
                    present.sort_by(f32::total_cmp);
                    let median = match present.len() {
                        0 => 0.0,
                        n if n % 2 == 1 => present[n / 2],
                        n => 0.5 * (present[n / 2 - 1] + present[n / 2]),
                    };
                    let filled: Vec<f64> = rows
                        .iter()
                        .map(|&r| f64::from(values[r].unwrap_or(median)))
                        .collect();
                    let mean = filled.iter().sum::<f64>() / filled.len() as f64;
                    let var = filled.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                        / filled.len() as f64;
                    Encoding::Numeric {
                        median,
                        mean: mean as f32,
                        std: (var.sqrt() as f32).max(1e-6),
                        indicator: present.len() < rows.len(),
                    }
                }
                TableColumn::Categorical(values) => {
                    let mut categories: Vec<String> =
                        rows.iter().filter_map(|&r| values[r].clone()).collect();
                    categories.sort();
                    categories.dedup();
                    Encoding::OneHot { categories }
                }
            };
            features.push((name.clone(), encoding));
        }
        Ok(ColumnTransformer { features })
    }

    /// Numbers per row after the transform.
    pub fn width(&self) -> usize {
        self.features
            .iter()
            .map(|(_, e)| match e {
                Encoding::Numeric { indicator, .. } => 1 + usize::from(*indicator),
                Encoding::OneHot { categories } => categories.len() + 1,
            })
            .sum()
    }

    /// The rows `rows` of `table` transformed, row-major (`rows.len() × width`).
    pub fn transform(&self, table: &Table, rows: &[usize]) -> Result<Vec<f32>> {
        check_rows("ColumnTransformer::transform", table, rows)?;
        let columns: Vec<&TableColumn> = self
            .features
            .iter()
            .map(|(name, _)| table.column(name))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len() * self.width());
        for &r in rows {
            for ((name, encoding), column) in self.features.iter().zip(&columns) {
                match (encoding, column) {
                    (
                        Encoding::Numeric {
                            median,
                            mean,
                            std,
                            indicator,
                        },
                        TableColumn::Numeric(values),
                    ) => {
                        out.push((values[r].unwrap_or(*median) - mean) / std);
                        if *indicator {
                            out.push(f32::from(u8::from(values[r].is_none())));
                        }
                    }
                    (Encoding::OneHot { categories }, TableColumn::Categorical(values)) => {
                        let slot = values[r]
                            .as_ref()
                            .and_then(|v| categories.iter().position(|c| c == v))
                            .unwrap_or(categories.len());
                        out.extend((0..=categories.len()).map(|i| f32::from(u8::from(i == slot))));
                    }
                    _ => {
                        return Err(Error::data(
                            "ColumnTransformer::transform",
                            format!(
                                "column {name:?} changed type since the transformer was fitted"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The transformer as JSON.
    pub fn to_json(&self) -> Value {
        let features: Vec<Value> = self
            .features
            .iter()
            .map(|(name, e)| match e {
                Encoding::Numeric {
                    median,
                    mean,
                    std,
                    indicator,
                } => json!({
                    "name": name, "kind": "numeric", "median": median, "mean": mean, "std": std,
                    "indicator": indicator,
                }),
                Encoding::OneHot { categories } => json!({
                    "name": name, "kind": "one_hot", "categories": categories,
                }),
            })
            .collect();
        json!({ "features": features })
    }

    /// A transformer from [`ColumnTransformer::to_json`]'s JSON.
    pub fn from_json(value: &Value) -> Result<ColumnTransformer> {
        let bad = |what: &str| Error::InvalidData {
            op: "ColumnTransformer::from_json",
            message: what.to_string(),
        };
        let float = |v: &Value, key: &str| {
            v[key]
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| bad(&format!("missing {key:?}")))
        };
        let features = value["features"]
            .as_array()
            .ok_or_else(|| bad("missing \"features\""))?
            .iter()
            .map(|f| {
                let name = f["name"]
                    .as_str()
                    .ok_or_else(|| bad("a feature without a name"))?
                    .to_string();
                let encoding = match f["kind"].as_str() {
                    Some("numeric") => Encoding::Numeric {
                        median: float(f, "median")?,
                        mean: float(f, "mean")?,
                        std: float(f, "std")?,
                        indicator: f["indicator"].as_bool().unwrap_or(false),
                    },
                    Some("one_hot") => Encoding::OneHot {
                        categories: f["categories"]
                            .as_array()
                            .ok_or_else(|| bad("missing \"categories\""))?
                            .iter()
                            .map(|c| c.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| bad("a non-string category"))?,
                    },
                    other => return Err(bad(&format!("unknown feature kind {other:?}"))),
                };
                Ok((name, encoding))
            })
            .collect::<Result<_>>()?;
        Ok(ColumnTransformer { features })
    }
}

/// Row indices split so that each label keeps its share in both parts: `(train, test)` with
/// `test_fraction` of every label's rows (shuffled from `seed`) in the test part.
pub fn stratified_split(labels: &[u32], test_fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let mut keys: Vec<u32> = by_label.keys().copied().collect();
    keys.sort_unstable();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for key in keys {
        let mut rows = by_label.remove(&key).unwrap_or_default();
        rows.shuffle(&mut rng);
        let cut = (rows.len() as f32 * test_fraction.clamp(0.0, 1.0)).round() as usize;
        test.extend_from_slice(&rows[..cut]);
        train.extend_from_slice(&rows[cut..]);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    (train, test)
}

/// Keras/scikit-learn's balanced class weights: `samples / (classes · count of the class)`.
pub fn balanced_class_weights(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                total as f32 / (classes * c) as f32
            }
        })
        .collect()
}
