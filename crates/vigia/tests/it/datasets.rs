//! Datasets end to end: a 100,000-row passenger list (quoted commas, empty
//! cells, UTF-8 names) uploaded to the object store, loaded in parallel
//! chunks by the loader, queried with every operator, sorted and paged;
//! a re-upload recognised by its digest; a loader killed mid-load resumed.

use std::time::{Duration, Instant};

use serde_json::Value;
use vigia::app::Parts;

use crate::common::{TestEnv, wait_for};

const ROWS: usize = 100_000;
const HEADER: &str =
    "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked,Home / Destination";
const SURNAMES: [&str; 8] = ["Braund", "Cumings", "Heikkinen", "Ödön", "Łukasz", "Nguyễn", "José", "O'Brien"];
const TITLES: [&str; 4] = ["Mr.", "Mrs.", "Miss.", "Master."];

/// One generated passenger: the cells as the file holds them (unquoted).
struct Passenger {
    cells: Vec<String>,
}

impl Passenger {
    fn name(&self) -> &str {
        &self.cells[3]
    }
    fn sex(&self) -> &str {
        &self.cells[4]
    }
    fn fare(&self) -> Option<f64> {
        self.cells[9].parse().ok()
    }
}

/// A deterministic passenger list; `salt` changes every fare so two lists differ.
fn passengers(rows: usize, salt: u64) -> (String, Vec<Passenger>) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ salt;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::with_capacity(rows * 110);
    text.push_str(HEADER);
    text.push('\n');
    let mut all = Vec::with_capacity(rows);
    for i in 0..rows {
        let r = next();
        let sex = if r % 3 == 0 { "female" } else { "male" };
        let name = format!("{}, {} Given{}", SURNAMES[(r >> 8) as usize % 8], TITLES[(r >> 12) as usize % 4], i % 977);
        let age = if (r >> 16) % 5 == 0 { String::new() } else { format!("{}", (r >> 20) % 80) };
        let fare =
            if (r >> 28) % 50 == 0 { String::new() } else { format!("{:.4}", ((r >> 32) % 50_000) as f64 / 100.0) };
        let cabin = if (r >> 40) % 4 == 0 { format!("C{}", (r >> 44) % 150) } else { String::new() };
        let cells = vec![
            (i + 1).to_string(),
            ((r >> 4) % 2).to_string(),
            ((r >> 6) % 3 + 1).to_string(),
            name,
            sex.to_owned(),
            age,
            ((r >> 24) % 4).to_string(),
            ((r >> 26) % 3).to_string(),
            format!("A/5 {}", 21_000 + i),
            fare,
            cabin,
            ["S", "C", "Q", ""][(r >> 50) as usize % 4].to_owned(),
            format!("Bridgerule, Devon / Salt {salt}"),
        ];
        let quoted: Vec<String> =
            cells
                .iter()
                .map(|c| {
                    if c.contains(',') || c.contains('"') {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect();
        text.push_str(&quoted.join(","));
        text.push('\n');
        all.push(Passenger { cells });
    }
    (text, all)
}

async fn upload(client: &reqwest::Client, base: &str, name: &str, body: String) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/datasets?name={name}"))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls the job until it is done; fails on `failed`.
async fn done(client: &reqwest::Client, base: &str, job: &str) -> Value {
    let url = format!("{base}/api/v1/jobs/{job}");
    let started = Instant::now();
    loop {
        let (status, j) = get(client, &url).await;
        assert_eq!(status, 200, "{j}");
        assert_ne!(j["state"], "failed", "the load failed: {j}");
        if j["state"] == "done" {
            return j;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "not loaded in 300 s: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `total` and the `PassengerId`s of a query's page.
async fn ids(client: &reqwest::Client, base: &str, query: &str) -> (u64, Vec<String>) {
    let (status, page) = get(client, &format!("{base}/api/v1/datasets/passengers?{query}")).await;
    assert_eq!(status, 200, "{query}: {page}");
    let ids = page["rows"].as_array().unwrap().iter().map(|r| r["PassengerId"].as_str().unwrap().to_owned()).collect();
    (page["total"].as_u64().unwrap(), ids)
}

fn expect(all: &[Passenger], keep: impl Fn(&Passenger) -> bool) -> u64 {
    all.iter().filter(|p| keep(p)).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passenger_list_uploads_loads_in_parallel_and_answers_every_query() {
    let env = TestEnv::start_alone().await;
    let (running, base) = env.serve().await;
    let client = reqwest::Client::new();
    let (csv, all) = passengers(ROWS, 1);

    let started = Instant::now();
    let (status, up) = upload(&client, &base, "Passengers", csv.clone()).await;
    assert_eq!(status, 202, "{up}");
    assert_eq!((up["dataset"].as_str(), up["status"].as_str()), (Some("passengers"), Some("queued")));
    assert!(up["digest"].as_str().unwrap().starts_with("SHA-256="), "{up}");
    assert_eq!(up["size"].as_u64(), Some(csv.len() as u64));
    let home = &up["columns"][12];
    assert_eq!((home["name"].as_str(), home["renamed"].as_bool()), (Some("Home_Destination"), Some(true)), "{up}");
    let job = done(&client, &base, up["job"].as_str().unwrap()).await;
    let took = started.elapsed();
    assert_eq!((job["rows_total"].as_u64(), job["rows_loaded"].as_u64()), (Some(ROWS as u64), Some(ROWS as u64)));
    assert_eq!(job["attempts"].as_u64(), Some(1), "{job}");
    println!(
        "loaded {ROWS} rows in {took:?} ({:.0} rows/s end to end; the job says {} rows/s)",
        ROWS as f64 / took.as_secs_f64(),
        job["rows_per_second"]
    );

    let (_, list) = get(&client, &format!("{base}/api/v1/datasets")).await;
    let listed = &list["datasets"][0];
    assert_eq!((listed["name"].as_str(), listed["state"].as_str()), (Some("passengers"), Some("ready")), "{list}");
    assert_eq!((listed["rows"].as_u64(), listed["table"].as_str()), (Some(ROWS as u64), Some("dataset_passengers")));

    // Paging in file order.
    let (_, page) = get(&client, &format!("{base}/api/v1/datasets/passengers?limit=0,2")).await;
    assert_eq!(page["total"].as_u64(), Some(ROWS as u64));
    assert_eq!(page["rows"][0]["_row"], 0);
    assert_eq!(page["rows"][1]["Name"].as_str(), Some(all[1].name()), "quoted commas survive: {page}");
    assert_eq!(ids(&client, &base, "limit=99999,5").await.1, vec![ROWS.to_string()]);

    // Every operator, against counts taken straight from the generated rows.
    let cases: Vec<(&str, u64)> = vec![
        ("sex=male", expect(&all, |p| p.sex() == "male")),
        ("SEX=eq:female", expect(&all, |p| p.sex() == "female")),
        ("Sex=neq:male", expect(&all, |p| p.sex() != "male")),
        ("Name=like:Braund", expect(&all, |p| p.name().to_lowercase().contains("braund"))),
        ("name=like:%C3%B6d%C3%B6n,%20mrs.%25", expect(&all, |p| p.name().starts_with("Ödön, Mrs."))),
        ("Fare=gt:7", expect(&all, |p| p.fare().is_some_and(|f| f > 7.0))),
        ("Fare=gte:250.5", expect(&all, |p| p.fare().is_some_and(|f| f >= 250.5))),
        ("Fare=lt:10", expect(&all, |p| p.fare().is_some_and(|f| f < 10.0))),
        ("Fare=lte:0", expect(&all, |p| p.fare().is_some_and(|f| f <= 0.0))),
        ("Age=eq:", expect(&all, |p| p.cells[5].is_empty())),
        ("Cabin=neq:", expect(&all, |p| !p.cells[10].is_empty())),
        (
            "sex=female&Pclass=1&Fare=gt:100",
            expect(&all, |p| p.sex() == "female" && p.cells[2] == "1" && p.fare().is_some_and(|f| f > 100.0)),
        ),
    ];
    for (query, want) in cases {
        assert!(want > 0 || query.contains("lte:0"), "{query} matches something in the generated list");
        assert_eq!(ids(&client, &base, query).await.0, want, "{query}");
    }

    // Sorting, with ties broken by file order, then paging through it.
    let mut order: Vec<usize> = (0..ROWS).collect();
    order.sort_by(|&a, &b| all[b].name().cmp(all[a].name()).then(all[a].sex().cmp(all[b].sex())).then(a.cmp(&b)));
    let want: Vec<String> = order[..5].iter().map(|&i| all[i].cells[0].clone()).collect();
    assert_eq!(ids(&client, &base, "sort=name:desc,Sex:asc&limit=0,5").await.1, want);
    let fares: Vec<usize> = {
        let mut with: Vec<usize> = (0..ROWS).filter(|&i| all[i].fare().is_some()).collect();
        with.sort_by(|&a, &b| all[a].fare().unwrap().total_cmp(&all[b].fare().unwrap()).then(a.cmp(&b)));
        with
    };
    let want: Vec<String> = fares[10..13].iter().map(|&i| all[i].cells[0].clone()).collect();
    assert_eq!(ids(&client, &base, "sort=Fare:asc&limit=10,3").await.1, want, "numbers sort as numbers");

    // Clear errors.
    let (status, problem) = get(&client, &format!("{base}/api/v1/datasets/passengers?Nope=eq:1")).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("Nope")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("PassengerId"), "the error lists the columns: {problem}");
    let (status, problem) = get(&client, &format!("{base}/api/v1/datasets/passengers?sort=Nope:asc")).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("sort")));
    let (status, _) = get(&client, &format!("{base}/api/v1/datasets/nothing_here")).await;
    assert_eq!(status, 404);

    // The same file again, under any name: recognised, nothing loaded.
    let (status, again) = upload(&client, &base, "copy", csv).await;
    assert_eq!(
        (status, again["status"].as_str(), again["dataset"].as_str()),
        (200, Some("duplicate"), Some("passengers"))
    );
    assert_eq!(again["job"], up["job"]);
    let (_, list) = get(&client, &format!("{base}/api/v1/datasets")).await;
    assert_eq!(list["datasets"].as_array().unwrap().len(), 1, "{list}");
    // Another file under a name in use.
    let (status, problem) = upload(&client, &base, "passengers", "a,b\n1,2\n".into()).await;
    assert_eq!((status, problem["field"].as_str()), (409, Some("name")), "{problem}");

    // Multipart, named by a field; then deleted.
    let form = reqwest::multipart::Form::new()
        .text("name", "small")
        .part("file", reqwest::multipart::Part::text("x,y\n1,\"a, b\"\n2,\n").file_name("whatever.csv"));
    let r = client.post(format!("{base}/api/v1/datasets")).multipart(form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let small: Value = r.json().await.unwrap();
    done(&client, &base, small["job"].as_str().unwrap()).await;
    let (_, page) = get(&client, &format!("{base}/api/v1/datasets/small?y=like:A,")).await;
    assert_eq!((page["total"].as_u64(), page["rows"][0]["x"].as_str()), (Some(1), Some("1")), "{page}");
    let r = client.delete(format!("{base}/api/v1/datasets/small")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&client, &format!("{base}/api/v1/datasets/small")).await.0, 404);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_loader_resumes_from_its_last_committed_chunk() {
    let mut env = TestEnv::start_alone().await;
    env.config.datasets.chunk_rows = 1_000;
    env.config.datasets.parallelism = 2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = env.run(Parts { http: Some(listener), ..Parts::default() });
    let client = reqwest::Client::new();
    let (csv, _) = passengers(ROWS, 2);
    let (status, up) = upload(&client, &base, "passengers", csv).await;
    assert_eq!(status, 202, "{up}");
    let job_url = format!("{base}/api/v1/jobs/{}", up["job"].as_str().unwrap());

    let loader = env.run(Parts { loader: true, ..Parts::default() });
    wait_for("five chunks committed", Duration::from_secs(120), || {
        let (client, url) = (client.clone(), job_url.clone());
        async move { get(&client, &url).await.1["chunks_done"].as_u64().unwrap_or(0) >= 5 }
    })
    .await;
    loader.kill().await;
    let (_, killed) = get(&client, &job_url).await;
    let committed = killed["chunks_done"].as_u64().unwrap();
    assert_eq!(killed["state"], "running", "killed mid-load: {killed}");
    assert!(committed < 100, "the kill came before the end: {killed}");

    // A new loader gets the job once the ack wait has passed and skips what is committed.
    let loader = env.run(Parts { loader: true, ..Parts::default() });
    let job = done(&client, &base, up["job"].as_str().unwrap()).await;
    assert_eq!(job["attempts"].as_u64(), Some(2), "{job}");
    assert!(job["resumed_chunks"].as_u64().unwrap() >= committed, "resumed after the committed chunks: {job}");
    assert_eq!((job["chunks_total"].as_u64(), job["chunks_done"].as_u64()), (Some(100), Some(100)), "{job}");
    assert_eq!((job["rows_total"].as_u64(), job["rows_loaded"].as_u64()), (Some(ROWS as u64), Some(ROWS as u64)));
    // Every position once: the query reads all rows back and checks they run 0..ROWS without a gap.
    let (status, page) = get(&client, &format!("{base}/api/v1/datasets/passengers?limit=99998,5")).await;
    assert_eq!((status, page["total"].as_u64()), (200, Some(ROWS as u64)), "{page}");
    let rows: Vec<u64> = page["rows"].as_array().unwrap().iter().map(|r| r["_row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![99_998, 99_999]);
    loader.shutdown().await;
    api.shutdown().await;
}
