//! Registry connections are pooled process-wide, and a process may run
//! several tokio runtimes (every end-to-end test's in-process server has
//! its own). Issue 12's CI failures: an image pushed unsigned, and a
//! referrers push that failed, both with "dispatch task is gone: runtime
//! dropped the dispatch task": the request had been handed a connection
//! another runtime opened, and that runtime ended mid-request.
//!
//! The registry here is a fake, named as such: a real one cannot be made to
//! hold an answer until the test has ended the other runtime. It speaks
//! just enough HTTP/1.1 (keep-alive, GET, no bodies) for a manifest read.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

/// Read one request's head; `false` once the client has closed.
fn read_request(reader: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

/// Answer the manifest (to a client that may have given up: then nothing).
fn answer(stream: &mut TcpStream) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
        MANIFEST.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(MANIFEST.as_bytes()));
}

/// A registry that answers its first request at once and its second only
/// once `release` says so; it tells `arrived` which connection (counted
/// from 1) each request came on.
fn holding_registry(arrived: mpsc::Sender<usize>, release: mpsc::Receiver<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut served = 0;
        for (connection, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while read_request(&mut reader) {
                served += 1;
                arrived.send(connection + 1).unwrap();
                if served == 2 {
                    release.recv().unwrap();
                }
                answer(&mut stream);
            }
        }
    });
    port
}

#[test]
fn issue_12_a_registry_request_outlives_the_runtime_that_opened_its_connection() {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let port = holding_registry(arrived_tx, release_rx);
    let reference = format!("127.0.0.1:{port}/connections/test:v1");

    // The first runtime reads the manifest: the connection is pooled.
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let digest = first
        .block_on(kiln_trust::registry::digest(&reference, None))
        .unwrap();
    assert_eq!(arrived.recv().unwrap(), 1);

    // A second runtime reads it again over the pooled connection; the first
    // runtime ends while the registry holds that answer.
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let again = second.block_on(async {
        let read = tokio::spawn({
            let reference = reference.clone();
            async move { kiln_trust::registry::digest(&reference, None).await }
        });
        let connection = tokio::task::spawn_blocking(move || {
            arrived.recv_timeout(Duration::from_secs(30)).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            connection, 1,
            "the second read opened a new connection, so this test shows nothing"
        );
        tokio::task::spawn_blocking(move || drop(first))
            .await
            .unwrap();
        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the second read answers")
            .unwrap()
    });
    assert_eq!(again.unwrap(), digest);
}
