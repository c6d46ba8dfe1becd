//! The recommender's data path and model on a small ratings file made here (MovieLens itself may
//! not be redistributed): both MovieLens layouts load, and user/movie embeddings with biases learn
//! low-rank ratings on every device.

use kiln::device::device_test;
use kiln::nn::data::movielens::{MovieLens, movielens};
use kiln::prelude::*;

/// Ratings of 30 users × 40 movies from two hidden tastes, every user rating every third movie.
fn write_ratings(dir: &std::path::Path, grouplens: bool) {
    let mut lines = Vec::new();
    for user in 1..=30u32 {
        for item in (1..=40u32).filter(|i| (i + user) % 3 != 0) {
            let taste = if user % 2 == 0 { 1.0 } else { -1.0 };
            let appeal = if item % 2 == 0 { 1.0 } else { -1.0 };
            let stars = (3.0 + taste * appeal + f32::from((item % 5) as u8) * 0.2).round();
            lines.push(if grouplens {
                format!("{user}\t{item}\t{stars}\t881250949")
            } else {
                format!("{user},{item},{stars},881250949")
            });
        }
    }
    let titles: Vec<String> = (1..=40)
        .map(|i| {
            if grouplens {
                format!("{i}|Movie {i} (1995)|01-Jan-1995")
            } else {
                format!("{i},Movie {i},1995")
            }
        })
        .collect();
    if grouplens {
        std::fs::write(dir.join("u.data"), lines.join("\n")).unwrap();
        std::fs::write(dir.join("u.item"), titles.join("\n")).unwrap();
    } else {
        std::fs::write(
            dir.join("ratings.csv"),
            format!("user_id,item_id,rating,timestamp\n{}", lines.join("\n")),
        )
        .unwrap();
        std::fs::write(
            dir.join("movies.csv"),
            format!("item_id,title,year\n{}", titles.join("\n")),
        )
        .unwrap();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-recommender-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn both_movielens_layouts_load_the_same_ratings() {
    let (a, b) = (temp_dir("csv"), temp_dir("grouplens"));
    write_ratings(&a, false);
    write_ratings(&b, true);
    let (csv, grouplens) = (movielens(&a).unwrap(), movielens(&b).unwrap());
    assert_eq!(csv.ratings, grouplens.ratings);
    assert_eq!((csv.users, csv.items), (30, 40));
    assert_eq!(csv.titles[4], "Movie 5");
    assert_eq!(grouplens.titles[4], "Movie 5 (1995)");
    let err = movielens(&std::env::temp_dir().join("kiln-no-such-dir"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ml-100k.zip"), "{err}");
    std::fs::write(a.join("ratings.csv"), "user_id,item_id,rating\n1,x,3\n").unwrap();
    let err = movielens(&a).unwrap_err().to_string();
    assert!(err.contains("row 2") && err.contains("\"x\""), "{err}");
}

device_test!(embeddings_learn_low_rank_ratings, |device| {
    let dir = temp_dir(&format!("train-{device}").replace([' ', ':', '(', ')', ','], "_"));
    write_ratings(&dir, false);
    let data = movielens(&dir).unwrap();
    let (train, test) = data.split(0.2, 0);
    let mean = MovieLens::mean(&train);
    let (user, item) = (Input::ids([1]).named("user"), Input::ids([1]).named("item"));
    let vector = |n, input: &Input| {
        Flatten::new()
            .apply(&Embedding::new(n, 4).apply(input).unwrap())
            .unwrap()
    };
    let rating = Dot::new(1)
        .apply(&[&vector(data.users, &user), &vector(data.items, &item)])
        .unwrap();
    let mut model = Model::new(&[&user, &item], &[&rating]).unwrap().on(&device);
    model
        .compile(
            Adam::new(0.05),
            Loss::MeanSquaredError,
            &[Metric::RootMeanSquaredError],
        )
        .unwrap();
    let (train_set, test_set) = (
        MovieLens::dataset(&train, mean).unwrap(),
        MovieLens::dataset(&test, mean).unwrap(),
    );
    let before = model.evaluate(&test_set, 256).unwrap().get("rmse").unwrap();
    let config = FitConfig {
        epochs: 30,
        batch_size: 64,
        verbose: false,
        ..Default::default()
    };
    model.fit(&train_set, &config).unwrap();
    let after = model.evaluate(&test_set, 256).unwrap().get("rmse").unwrap();
    assert!(after < 0.6 * before, "test rmse {before} -> {after}");
});
