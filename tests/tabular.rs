//! Tabular tools: typed CSV columns with missing values, the column transformer (median imputation
//! with indicators, scaling, one-hot with an unknown slot, JSON round trip), stratified splits and
//! balanced class weights.

use kiln::nn::data::tabular::{
    ColumnTransformer, Table, TableColumn, balanced_class_weights, stratified_split,
};

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kiln-tabular-{name}-{}.csv", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn columns_are_typed_and_missing_values_kept_as_gaps() {
    let path = write(
        "typed",
        "\"y\",\"age\",\"home\"\n\"bad\",30,\"rent\"\n\"good\",,\"owner\"\n\"good\",50,NA\n",
    );
    let table = Table::read_csv(&path).unwrap();
    assert_eq!(table.rows, 3);
    assert_eq!(
        table.column("age").unwrap(),
        &TableColumn::Numeric(vec![Some(30.0), None, Some(50.0)])
    );
    assert_eq!(
        table.column("home").unwrap(),
        &TableColumn::Categorical(vec![Some("rent".into()), Some("owner".into()), None])
    );
    assert_eq!(table.binary_labels("y", "bad").unwrap(), [1, 0, 0]);
    assert!(
        table
            .column("income")
            .unwrap_err()
            .to_string()
            .contains("y, age, home")
    );
    let ragged = write("ragged", "a,b\n1,2\n3\n");
    assert!(
        Table::read_csv(&ragged)
            .unwrap_err()
            .to_string()
            .contains("row 3")
    );
    let twice = write("twice", "a,a\n1,2\n");
    assert!(
        Table::read_csv(&twice)
            .unwrap_err()
            .to_string()
            .contains("repeats")
    );
    let nan_marker = write("nan", "x\n1\nnan\nN/A\n");
    assert_eq!(
        Table::read_csv(&nan_marker).unwrap().columns[0],
        TableColumn::Numeric(vec![Some(1.0), None, None])
    );
    let infinite = write("inf", "x\n1\ninf\n");
    assert!(
        Table::read_csv(&infinite)
            .unwrap_err()
            .to_string()
            .contains("not finite")
    );
    assert!(
        table
            .binary_labels("y", "Bad")
            .unwrap_err()
            .to_string()
            .contains("both classes")
    );
}

#[test]
fn the_transformer_imputes_scales_and_one_hot_encodes() {
    let path = write("transform", "y,x,c\n0,1,a\n1,3,b\n0,,a\n1,5,z\n");
    let table = Table::read_csv(&path).unwrap();
    // fitted on the first three rows: x median 2 (of 1, 3), with a missing indicator; c in {a, b}
    let columns = ColumnTransformer::fit(&table, &["y"], &[0, 1, 2]).unwrap();
    assert_eq!(columns.width(), 2 + 3);
    let rows = columns.transform(&table, &[2, 3]).unwrap();
    // filled values 1, 3, 2: mean 2, std sqrt(2/3)
    let std = (2.0f32 / 3.0).sqrt();
    let expected_x2 = (2.0 - 2.0) / std;
    assert!(
        (rows[0] - expected_x2).abs() < 1e-5 && rows[1] == 1.0,
        "{rows:?}"
    );
    assert_eq!(&rows[2..5], &[1.0, 0.0, 0.0], "row 2 is category a");
    // row 3: x = 5, not missing; category z was never seen: the unknown slot
    assert!((rows[5] - (5.0 - 2.0) / std).abs() < 1e-5 && rows[6] == 0.0);
    assert_eq!(&rows[7..10], &[0.0, 0.0, 1.0]);
    let restored = ColumnTransformer::from_json(&columns.to_json()).unwrap();
    assert_eq!(restored, columns);
}

#[test]
fn splits_keep_each_label_share_and_weights_balance_them() {
    let labels: Vec<u32> = (0..100).map(|i| u32::from(i % 4 == 0)).collect();
    let (train, test) = stratified_split(&labels, 0.2, 7);
    assert_eq!((train.len(), test.len()), (80, 20));
    assert_eq!(test.iter().filter(|&&i| labels[i] == 1).count(), 5);
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(stratified_split(&labels, 0.2, 7), (train, test), "seeded");
    let weights = balanced_class_weights(&labels, 2);
    assert!((weights[0] - 100.0 / 150.0).abs() < 1e-6 && (weights[1] - 2.0).abs() < 1e-6);
}

#[test]
fn a_text_column_with_a_word_that_reads_as_infinity_stays_categorical() {
    let path = std::env::temp_dir().join(format!("kiln-inf-{}.csv", std::process::id()));
    std::fs::write(&path, "name,x\nInf,1\nZero,2\n").unwrap();
    let table = kiln::nn::data::tabular::Table::read_csv(&path).unwrap();
    assert!(matches!(
        table.column("name").unwrap(),
        kiln::nn::data::tabular::TableColumn::Categorical(_)
    ));
    std::fs::write(&path, "x\n1\ninf\n").unwrap();
    let e = kiln::nn::data::tabular::Table::read_csv(&path).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
}
