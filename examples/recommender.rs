//! A movie recommender on MovieLens 100K: user and movie ids → embeddings and biases → their dot
//! product, a rating (with `--tower 64,32`, plus an MLP on the two vectors: neural collaborative
//! filtering). Trained on a seeded random 80/20 split of the ratings; prints the test RMSE
//! and MAE, precision@10 and NDCG@10 of held-out ratings ≥ 4, and the top 10 unseen movies of a user.
//!
//! ```text
//! cargo run --release --example recommender -- [--data DIR] [--epochs 20] [--batch-size 256]
//!     [--dim 64] [--tower 64,32] [--lr 0.003] [--l2 3e-4] [--device auto|cpu|gpu] [--seed 0]
//!     [--user 1]
//! ```
//!
//! `DIR` holds GroupLens's `ml-100k` (`u.data`, `u.item`) or `ratings.csv` + `movies.csv`. Without
//! `--data`: `../shared/data/movielens-100k` next to the repository when it is there, else
//! <https://files.grouplens.org/datasets/movielens/ml-100k.zip> downloaded into `~/.cache/kiln/movielens`
//! and checked against the MD5 GroupLens publishes (not with `KILN_OFFLINE=1`).

use std::path::{Path, PathBuf};

use kiln::nn::data::movielens::{GROUPLENS, MovieLens, Rating, download_movielens, movielens};
use kiln::nn::plot;
use kiln::prelude::*;

mod common;
use common::{arg, device, help, number};

/// Where the model and its plots are saved.
const SAVED: &str = "recommender-model";

/// Embeddings and biases of users and movies; the output is the rating minus the training mean.
/// With a `tower` (hidden sizes), neural collaborative filtering (NeuMF): an MLP on the
/// concatenated user and movie vectors adds its output to the dot product and the biases.
fn model(
    users: usize,
    items: usize,
    dim: usize,
    tower: &[usize],
    device: &Device,
) -> kiln::Result<Model> {
    let user = Input::ids([1]).named("user");
    let item = Input::ids([1]).named("item");
    let vector = |n: usize, input: &Input| -> kiln::Result<Node> {
        Flatten::new().apply(&Embedding::new(n, dim).apply(input)?)
    };
    let bias = |n: usize, input: &Input| -> kiln::Result<Node> {
        Flatten::new().apply(&Embedding::new(n, 1).apply(input)?)
    };
    let (user_vector, item_vector) = (vector(users, &user)?, vector(items, &item)?);
    let affinity = Dot::new(1).apply(&[&user_vector, &item_vector])?;
    let mut parts = vec![affinity, bias(users, &user)?, bias(items, &item)?];
    if !tower.is_empty() {
        let mut hidden = Concatenate::new().apply(&[&user_vector, &item_vector])?;
        for &units in tower {
            hidden = Dense::new(units)
                .activation(Activation::Relu)
                .apply(&hidden)?;
        }
        parts.push(Dense::new(1).apply(&hidden)?);
    }
    let rating = Add::new().apply(&parts.iter().collect::<Vec<_>>())?;
    Ok(Model::new(&[&user, &item], &[&rating])?.on(device))
}

/// Every user's predicted score of every movie, `[users, items]`, from one batched prediction.
fn all_scores(model: &Model, users: usize, items: usize) -> kiln::Result<Vec<f32>> {
    let user_ids: Vec<u32> = (0..users as u32)
        .flat_map(|u| std::iter::repeat_n(u, items))
        .collect();
    let item_ids: Vec<u32> = (0..users).flat_map(|_| 0..items as u32).collect();
    let grid = Dataset::from_inputs(
        vec![
            ("user", Column::ids(user_ids, [1])),
            ("item", Column::ids(item_ids, [1])),
        ],
        Targets::None,
    )?;
    model.predict_dataset(&grid, 65_536)?.to_vec::<f32>()
}

/// precision@10 and NDCG@10 over users with held-out ratings ≥ 4: each user's unseen movies ranked
/// by score, the relevant ones those rated ≥ 4 in the test split.
fn ranking_quality(
    scores: &[f32],
    items: usize,
    train: &[Rating],
    test: &[Rating],
    users: usize,
) -> (f32, f32) {
    let mut seen = vec![false; users * items];
    for r in train {
        seen[r.user as usize * items + r.item as usize] = true;
    }
    let mut relevant = vec![Vec::new(); users];
    for r in test.iter().filter(|r| r.rating >= 4.0) {
        relevant[r.user as usize].push(r.item as usize);
    }
    let (mut precision, mut ndcg, mut counted) = (0.0f64, 0.0f64, 0usize);
    for (user, wanted) in relevant.iter().enumerate().filter(|(_, w)| !w.is_empty()) {
        let row = &scores[user * items..][..items];
        let mut candidates: Vec<usize> = (0..items).filter(|&i| !seen[user * items + i]).collect();
        candidates.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let hits: Vec<bool> = candidates
            .iter()
            .take(10)
            .map(|i| wanted.contains(i))
            .collect();
        precision += hits.iter().filter(|&&h| h).count() as f64 / 10.0;
        let dcg: f64 = hits
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..wanted.len().min(10))
            .map(|rank| 1.0 / (rank as f64 + 2.0).log2())
            .sum();
        ndcg += dcg / ideal;
        counted += 1;
    }
    let n = counted.max(1) as f64;
    ((precision / n) as f32, (ndcg / n) as f32)
}

fn main() -> kiln::Result<()> {
    help(
        "cargo run --release --example recommender -- [--data DIR] [--epochs 20] [--batch-size 256]\n    [--dim 64] [--tower 64,32] [--lr 0.003] [--l2 3e-4] [--device auto|cpu|gpu] [--seed 0]\n    [--user 1]\n(--tower adds an MLP on the user and movie vectors: neural collaborative filtering)",
    );
    let device = device()?;
    let default_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/movielens-100k");
    let given = arg("--data", "");
    let dir = if !given.is_empty() {
        PathBuf::from(given)
    } else if default_dir.exists() {
        default_dir
    } else {
        // GroupLens's ml-100k.zip into the user cache, checked against its published MD5.
        let cache = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/kiln/movielens"))
            .unwrap_or_else(|| PathBuf::from("movielens"));
        if std::env::var_os("KILN_OFFLINE").is_some_and(|v| v != "0") {
            return Err(Error::argument(
                "recommender",
                "no MovieLens here and KILN_OFFLINE is set: pass --data DIR",
            ));
        }
        println!(
            "downloading MovieLens 100K from {GROUPLENS} into {}",
            cache.display()
        );
        download_movielens(GROUPLENS, &cache)?
    };
    let (epochs, batch_size, dim, seed) = (
        number("--epochs", 20)?,
        number("--batch-size", 256)?,
        number("--dim", 64)?,
        number("--seed", 0u64)?,
    );
    let data = movielens(&dir)?;
    let (train, test) = data.split(0.2, seed);
    let mean = MovieLens::mean(&train);
    println!(
        "device: {device}; {} users, {} movies; {} training and {} test ratings (mean {mean:.3})",
        data.users,
        data.items,
        train.len(),
        test.len()
    );
    kiln::nn::functional::set_random_seed(seed);
    let tower: Vec<usize> = arg("--tower", "")
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse().map_err(|_| {
                Error::argument(
                    "recommender",
                    format!("--tower {t:?}: give layer sizes like 64,32"),
                )
            })
        })
        .collect::<kiln::Result<_>>()?;
    let mut model = model(data.users, data.items, dim, &tower, &device)?;
    print!("{}", model.summary());
    let metrics = [Metric::RootMeanSquaredError, Metric::MeanAbsoluteError];
    let (lr, l2) = (number("--lr", 0.003f32)?, number("--l2", 3e-4f32)?);
    model.compile(
        Adam::new(lr).weight_decay(l2),
        Loss::MeanSquaredError,
        &metrics,
    )?;
    // Early stopping watches the last tenth of the training ratings, never the test split.
    let (fit_part, watch_part) = train.split_at(train.len() * 9 / 10);
    let (train_set, watch_set, test_set) = (
        MovieLens::dataset(fit_part, mean)?,
        MovieLens::dataset(watch_part, mean)?,
        MovieLens::dataset(&test, mean)?,
    );
    let mut stop = EarlyStopping::new(Monitor::ValMetric(Metric::RootMeanSquaredError), 2)
        .restore_best_weights(true);
    let config = FitConfig {
        epochs,
        batch_size,
        shuffle: Some(seed),
        validation_data: Some(&watch_set),
        callbacks: Callbacks::new(vec![&mut stop]),
        ..Default::default()
    };
    let history = model.fit(&train_set, &config)?;
    let result = model.evaluate(&test_set, 4096)?;
    let scores = all_scores(&model, data.users, data.items)?;
    let (precision, ndcg) = ranking_quality(&scores, data.items, &train, &test, data.users);
    println!(
        "test rmse: {:.4} - mae: {:.4} - precision_at_10: {precision:.4} - ndcg_at_10: {ndcg:.4}",
        result.get("rmse").unwrap_or(f32::NAN),
        result.get("mae").unwrap_or(f32::NAN),
    );
    let user = number("--user", 1usize)?.clamp(1, data.users) - 1;
    let row = Tensor::from_slice(
        &scores[user * data.items..][..data.items],
        [1, data.items],
        &device,
    )?;
    // movies the user rated are pushed to the bottom before the top 10 are taken on the device
    let mut seen = vec![0.0f32; data.items];
    for r in data.ratings.iter().filter(|r| r.user as usize == user) {
        seen[r.item as usize] = -1e9;
    }
    let unseen = seen.iter().filter(|&&s| s == 0.0).count();
    let (top, ids) = row
        .add(&Tensor::from_slice(&seen, [1, data.items], &device)?)?
        .topk(unseen.clamp(1, 10))?;
    println!(
        "top {} unseen movies for user {}:",
        unseen.min(10),
        user + 1
    );
    for (score, item) in top.to_vec::<f32>()?.iter().zip(ids.to_vec::<u32>()?) {
        println!("  {:.2}  {}", score + mean, data.titles[item as usize]);
    }
    let saved = Path::new(SAVED);
    model.save(saved)?;
    let errors: Vec<f32> = test
        .iter()
        .map(|r| scores[r.user as usize * data.items + r.item as usize] + mean - r.rating)
        .collect();
    history.plot(&saved.join("history.png"))?;
    plot::histogram(
        &errors,
        40,
        "test rating errors (predicted - actual)",
        "stars",
        &saved.join("errors.png"),
    )?;
    println!("saved the model to {SAVED}/; plots: {SAVED}/history.png, {SAVED}/errors.png");
    Ok(())
}
