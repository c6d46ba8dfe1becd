//! Verified downloads against a local HTTP server on 127.0.0.1 that serves the shipped sample files.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln::nn::data::{
    DownloadLimits, RemoteFile, download_verified, download_verified_with, read_idx,
};

const IMAGES_SHA256: &str = "a03b666d5ad70839432564b36777186704a9cefd6155dd8c6567a5f799e03b6e";
const LABELS_SHA256: &str = "22261f2bd5dc188d83bf9ace3a4dd38b1de50b58c59060c44cc0b4b47dd9132a";

/// Serves files of `dir` for exactly `requests` requests, then stops.
fn serve(dir: PathBuf, requests: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let (status, body) = match std::fs::read(dir.join(&path)) {
                Ok(bytes) => ("200 OK", bytes),
                Err(_) => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    (address, handle)
}

fn sample_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample")
}

#[test]
fn downloads_verify_their_checksums() {
    let dest = std::env::temp_dir().join(format!("kiln-download-{}", std::process::id()));
    let files = [
        RemoteFile {
            name: "images-idx3-ubyte.gz",
            sha256: IMAGES_SHA256,
        },
        RemoteFile {
            name: "labels-idx1-ubyte.gz",
            sha256: LABELS_SHA256,
        },
    ];
    let (url, server) = serve(sample_dir(), 2);
    download_verified(&url, &files, &dest).unwrap();
    server.join().unwrap();
    assert_eq!(
        read_idx(&dest.join("images-idx3-ubyte.gz"), 3)
            .unwrap()
            .dims,
        vec![10_000, 28, 28]
    );
    // Present and verified: nothing is fetched again (the server is gone).
    download_verified(&url, &files, &dest).unwrap();

    // A wrong checksum is an error, and neither the file nor its partial download is kept.
    let (url, server) = serve(sample_dir(), 1);
    let wrong = [RemoteFile {
        name: "labels-idx1-ubyte.gz",
        sha256: IMAGES_SHA256,
    }];
    let elsewhere = dest.join("wrong");
    let err = download_verified(&url, &wrong, &elsewhere)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(
        err.contains("SHA-256 mismatch") && err.contains(LABELS_SHA256),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "no file left behind"
    );

    // A missing file is an error naming it.
    let (url, server) = serve(sample_dir(), 1);
    let missing = [RemoteFile {
        name: "nothing-here.gz",
        sha256: IMAGES_SHA256,
    }];
    let err = download_verified(&url, &missing, &elsewhere)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(
        err.contains("nothing-here.gz") && err.contains("404"),
        "{err}"
    );
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn dataset_downloads_check_the_published_checksums() {
    // A mirror that serves the wrong bytes under the standard names (the shipped sample instead of
    // the full training set) is refused, and nothing is kept.
    let mirror = std::env::temp_dir().join(format!("kiln-mirror-{}", std::process::id()));
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::copy(
        sample_dir().join("images-idx3-ubyte.gz"),
        mirror.join("train-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let dest = mirror.join("cache");
    let (url, server) = serve(mirror.clone(), 1);
    let err = kiln::datasets::download(kiln::datasets::Which::Mnist, &url, &dest)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(
        err.contains("train-images-idx3-ubyte.gz")
            && err.contains("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    std::fs::remove_dir_all(&mirror).unwrap();
}

/// A server that answers one request with `head` and `body`, then holds the connection open for
/// `hold` without sending more.
fn stalling_server(head: String, body: Vec<u8>, hold: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            std::thread::sleep(hold);
        }
    });
    address
}

#[test]
fn a_stalled_transfer_times_out_and_leaves_nothing() {
    let dest = std::env::temp_dir().join(format!("kiln-stall-{}", std::process::id()));
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_string();
    let url = stalling_server(head, vec![7u8; 1000], Duration::from_secs(20));
    let limits = DownloadLimits {
        idle: Duration::from_secs(1),
        ..DownloadLimits::default()
    };
    let file = [RemoteFile {
        name: "slow.gz",
        sha256: IMAGES_SHA256,
    }];
    let started = Instant::now();
    let err = download_verified_with(&url, &file, &dest, limits)
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("slow.gz"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        0,
        "no partial file kept"
    );
    std::fs::remove_dir_all(&dest).unwrap();
}

#[test]
fn a_file_larger_than_the_cap_is_refused() {
    let dest = std::env::temp_dir().join(format!("kiln-cap-{}", std::process::id()));
    let file = [RemoteFile {
        name: "huge.gz",
        sha256: IMAGES_SHA256,
    }];
    let limits = DownloadLimits {
        max_bytes: 1000,
        ..DownloadLimits::default()
    };
    // Announced too large: refused from the headers.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\n\r\n".to_string();
    let url = stalling_server(head, Vec::new(), Duration::from_secs(5));
    let err = download_verified_with(&url, &file, &dest, limits)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5000000000") && err.contains("max_bytes"),
        "{err}"
    );
    // Not announced, but more than the cap arrives: refused while reading.
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
    let url = stalling_server(head, vec![1u8; 5000], Duration::from_millis(10));
    let err = download_verified_with(&url, &file, &dest, limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the 1000 bytes"), "{err}");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    std::fs::remove_dir_all(&dest).unwrap();
}

/// `ml-100k.zip` as GroupLens lays it out (a folder `ml-100k/` with `u.data` and `u.item`), holding
/// three ratings of two movies.
fn movielens_zip() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("ml-100k/u.data", options).unwrap();
    zip.write_all(b"1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n")
        .unwrap();
    zip.start_file("ml-100k/u.item", options).unwrap();
    zip.write_all(
        b"1|Toy Story (1995)|01-Jan-1995||http://x|0\n2|GoldenEye (1995)|01-Jan-1995||http://y|0\n",
    )
    .unwrap();
    zip.start_file("ml-100k/README", options).unwrap();
    zip.write_all(b"not unpacked").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn movielens_downloads_check_grouplens_md5_and_unpack_what_the_loader_reads() {
    use kiln::nn::data::movielens::{download_movielens, movielens};
    use md5::{Digest, Md5};
    let root = std::env::temp_dir().join(format!("kiln-ml-{}", std::process::id()));
    let (site, dest) = (root.join("site"), root.join("cache"));
    std::fs::create_dir_all(&site).unwrap();
    let zip = movielens_zip();
    std::fs::write(site.join("ml-100k.zip"), &zip).unwrap();
    // GroupLens's checksum files read "MD5 (ml-100k.zip) = <hex>".
    let md5 = format!("{:x}", Md5::digest(&zip));
    std::fs::write(
        site.join("ml-100k.zip.md5"),
        format!("MD5 (ml-100k.zip) = {md5}\n"),
    )
    .unwrap();
    let (url, server) = serve(site.clone(), 2);
    let dir = download_movielens(&url, &dest).unwrap();
    server.join().unwrap();
    let data = movielens(&dir).unwrap();
    assert_eq!((data.users, data.items, data.ratings.len()), (2, 2, 3));
    assert_eq!(data.titles[1], "GoldenEye (1995)");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["u.data", "u.item"], "only the unpacked files stay");
    // Present: nothing is fetched again (no server now).
    assert_eq!(download_movielens(&url, &dest).unwrap(), dir);

    // A published checksum the archive does not match: refused, nothing kept.
    std::fs::write(
        site.join("ml-100k.zip.md5"),
        "0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let elsewhere = root.join("other");
    let (url, server) = serve(site, 2);
    let err = download_movielens(&url, &elsewhere)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(err.contains("MD5 mismatch") && err.contains(&md5), "{err}");
    assert_eq!(
        std::fs::read_dir(elsewhere.join("ml-100k"))
            .unwrap()
            .count(),
        0
    );
    std::fs::remove_dir_all(&root).unwrap();
}
