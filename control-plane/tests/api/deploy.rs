//! Static checks of `deploy/` and the Dockerfile (no docker, no cluster): the files parse; every container runs
//! a binary the image builds; every environment variable they set is one that binary reads (the `ENV_VARS`
//! lists of the two config modules); ports, probes, Services, secrets, HPA and PDB refer to things that exist;
//! and the Grafana dashboard and alert rules name only metrics the binaries export, as scraped from a live
//! control plane and node after some traffic; and the image's runtime contract (CMD, ENV, USER, HEALTHCHECK) run
//! without an engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde::Deserialize as _;
use serde_json::Value as Json;
use serde_yaml_ng::Value;

use crate::helpers::{Backend, TestDatabase, spawn_app, spawn_app_with};
use crate::node::{chat_body, spawn_node, start_mock};

const CONTROL_PLANE: &str = "switchyard-control-plane";
const DATA_PLANE: &str = "switchyard-data-plane";
const MOCK: &str = "switchyard-mock-provider";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every document of a YAML file, merge keys (`<<:`) applied.
fn yaml_docs(rel: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(rel))
        .map(|doc| {
            let mut v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel} does not parse: {e}"));
            v.apply_merge().unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

/// The environment variables a binary reads.
fn env_vars_of(binary: &str) -> &'static [&'static str] {
    match binary {
        CONTROL_PLANE => switchyard_control_plane::config::ENV_VARS,
        DATA_PLANE => switchyard_data_plane::config::ENV_VARS,
        MOCK => &["RUST_LOG"],
        other => panic!("`{other}` is not a binary of the image"),
    }
}

/// The port of a `host:port` listen address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("`{addr}` has no port"))
}

/// The variable naming the listen address of a binary.
fn listen_var(binary: &str) -> Option<&'static str> {
    match binary {
        CONTROL_PLANE => Some("SWITCHYARD_CP_LISTEN"),
        DATA_PLANE => Some("SWITCHYARD_LISTEN"),
        _ => None,
    }
}

/// `switchyard_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("switchyard_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            expr[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |n| start + n);
        if boundary {
            out.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

#[test]
fn the_dockerfile_builds_every_binary_and_runs_as_non_root() {
    let dockerfile = read("Dockerfile");
    for bin in [CONTROL_PLANE, DATA_PLANE, MOCK] {
        assert!(dockerfile.contains(&format!("-p {bin}")), "the Dockerfile does not build {bin}");
        assert!(dockerfile.contains(&format!("target/release/{bin}")), "the Dockerfile does not copy {bin}");
    }
    let user = dockerfile.lines().rev().find(|l| l.starts_with("USER ")).expect("no USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "runs as root: {user}");
    assert!(dockerfile.contains("HEALTHCHECK"), "no HEALTHCHECK");
    for line in dockerfile.lines().filter(|l| l.trim_start().starts_with("SWITCHYARD_") || l.starts_with("ENV ")) {
        let name = line.trim_start().trim_start_matches("ENV ").split('=').next().unwrap().trim();
        let read_by_some = [CONTROL_PLANE, DATA_PLANE].iter().any(|b| env_vars_of(b).contains(&name));
        assert!(read_by_some, "the Dockerfile sets {name}, which no binary reads");
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore must keep target/ out of the context");
}

#[test]
fn compose_services_run_real_binaries_with_variables_they_read() {
    let compose = yaml_docs("deploy/compose.yaml").remove(0);
    let services = compose["services"].as_mapping().expect("no services");
    let names: BTreeSet<&str> = services.keys().map(s).collect();
    for required in ["postgres", "redis", "control-plane", "node-1", "node-2", "mock-provider", "prometheus", "grafana"]
    {
        assert!(names.contains(required), "compose has no `{required}` service");
    }
    let gen_secrets = read("deploy/gen-secrets.sh");
    let mut listen_ports = std::collections::BTreeMap::new();
    for (name, svc) in services {
        let name = s(name);
        if !s(&svc["image"]).starts_with("switchyard:") {
            continue;
        }
        assert_eq!(s(&svc["build"]["dockerfile"]), "Dockerfile", "{name} must build the repository's image");
        let binary = s(&seq(&svc["command"])[0]);
        let allowed = env_vars_of(binary);
        let env = svc["environment"].as_mapping().cloned().unwrap_or_default();
        let secrets: Vec<&str> = seq(&svc["secrets"]).iter().map(s).collect();
        for (var, value) in &env {
            let var = s(var);
            assert!(allowed.contains(&var), "{name} sets {var}, which {binary} does not read");
            if var.ends_with("_FILE") {
                let file = s(value).strip_prefix("/run/secrets/").expect("secret files live in /run/secrets");
                assert!(secrets.contains(&file), "{name}: {var} names secret `{file}` it is not given");
                assert!(gen_secrets.contains(&format!("gen {file} ")), "gen-secrets.sh does not create {file}");
                assert!(compose["secrets"][file]["file"].is_string(), "secret {file} is not declared");
            }
        }
        if let Some(var) = listen_var(binary) {
            let port = port_of(env.get(var).map(s).unwrap_or_else(|| panic!("{name} does not set {var}")));
            listen_ports.insert(name.to_owned(), port);
            for mapping in seq(&svc["ports"]) {
                assert_eq!(port_of(s(mapping)), port, "{name} publishes a port it does not listen on");
            }
            let check = seq(&svc["healthcheck"]["test"]).iter().map(s).collect::<Vec<_>>().join(" ");
            assert!(
                check.contains(&format!("probe http://127.0.0.1:{port}/readyz")),
                "{name}'s health check does not probe its own /readyz: {check}"
            );
        }
    }
    // Nodes reach the control plane where it listens.
    for node in ["node-1", "node-2"] {
        let url = s(&services[node]["environment"]["SWITCHYARD_CONTROL_PLANE_URL"]).to_owned();
        assert_eq!(url, format!("http://control-plane:{}", listen_ports["control-plane"]));
    }
    // Prometheus scrapes where the binaries listen; Grafana reads that Prometheus.
    let prometheus = yaml_docs("deploy/prometheus/prometheus.yml").remove(0);
    for job in seq(&prometheus["scrape_configs"]) {
        for target in seq(&job["static_configs"]).iter().flat_map(|c| seq(&c["targets"])) {
            let (host, port) = s(target).split_once(':').unwrap();
            assert_eq!(listen_ports.get(host), Some(&port.parse().unwrap()), "scrape target {host}:{port}");
        }
    }
    assert!(
        seq(&prometheus["rule_files"]).iter().any(|f| s(f).ends_with("alerts.yaml")),
        "the alert rules are not loaded"
    );
    let datasources = yaml_docs("deploy/grafana/provisioning/datasources/prometheus.yaml").remove(0);
    let ds = &seq(&datasources["datasources"])[0];
    assert_eq!(s(&ds["url"]), "http://prometheus:9090");
    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/dashboards/switchyard.json")).unwrap();
    for target in dashboard_targets(&dashboard) {
        assert_eq!(target["datasource"]["uid"].as_str(), s(&ds["uid"]).into(), "panel datasource is not provisioned");
    }
    let providers = yaml_docs("deploy/grafana/provisioning/dashboards/switchyard.yaml").remove(0);
    let mounted = seq(&services["grafana"]["volumes"]).iter().any(|v| {
        s(v).starts_with("./grafana/dashboards:")
            && s(v).contains(s(&seq(&providers["providers"])[0]["options"]["path"]))
    });
    assert!(mounted, "Grafana does not mount the dashboards where the provider looks");
}

/// Every object of the manifests that kustomization.yaml applies, plus the optional ones beside them.
fn manifests() -> Vec<Value> {
    let kustomization = yaml_docs("deploy/k8s/kustomization.yaml").remove(0);
    let mut files: Vec<String> = seq(&kustomization["resources"]).iter().map(|r| s(r).to_owned()).collect();
    files.extend(["secrets.example.yaml".to_owned(), "migrate-job.yaml".to_owned()]);
    files.iter().flat_map(|f| yaml_docs(&format!("deploy/k8s/{f}"))).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| s(&o["kind"]) == kind).collect()
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("empty selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_are_consistent_with_the_binaries() {
    let objects = manifests();
    let secret = of_kind(&objects, "Secret")[0];
    let deployments = of_kind(&objects, "Deployment");
    let services = of_kind(&objects, "Service");
    let mut workloads: Vec<&Value> = deployments.clone();
    workloads.extend(of_kind(&objects, "Job"));
    let mut seen = BTreeSet::new();
    for w in &workloads {
        let name = s(&w["metadata"]["name"]);
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{name} may run as root");
        let volumes = seq(&pod["volumes"]);
        for c in seq(&pod["containers"]) {
            assert!(s(&c["image"]).starts_with("switchyard:"), "{name} runs another image");
            let binary = s(&seq(&c["command"])[0]);
            seen.insert(binary.to_owned());
            let env: Vec<(&str, &Value)> = seq(&c["env"]).iter().map(|e| (s(&e["name"]), e)).collect();
            for (var, e) in &env {
                assert!(env_vars_of(binary).contains(var), "{name} sets {var}, which {binary} does not read");
                if var.ends_with("_FILE") {
                    let path = s(&e["value"]);
                    let mount = seq(&c["volumeMounts"])
                        .iter()
                        .find(|m| path.starts_with(&format!("{}/", s(&m["mountPath"]))))
                        .unwrap_or_else(|| panic!("{name}: {var}={path} is not under a mount"));
                    let file = &path[s(&mount["mountPath"]).len() + 1..];
                    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("mount of no volume");
                    assert_eq!(s(&volume["secret"]["secretName"]), s(&secret["metadata"]["name"]));
                    let item = seq(&volume["secret"]["items"])
                        .iter()
                        .find(|i| s(&i["path"]) == file)
                        .unwrap_or_else(|| panic!("{name}: no secret item provides {file}"));
                    assert!(secret["stringData"].get(s(&item["key"])).is_some(), "the Secret has no {:?}", item["key"]);
                }
            }
            let Some(listen) = listen_var(binary) else { continue };
            if s(&w["kind"]) == "Job" {
                continue;
            }
            let value = env.iter().find(|(v, _)| *v == listen).map(|(_, e)| s(&e["value"]));
            let port = port_of(value.unwrap_or_else(|| panic!("{name} does not set {listen}")));
            let ports = seq(&c["ports"]);
            assert!(ports.iter().any(|p| p["containerPort"].as_u64() == Some(port.into())), "{name}: port {port}");
            let named =
                |n: &Value| ports.iter().any(|p| p["name"] == *n && p["containerPort"].as_u64() == Some(port.into()));
            assert_eq!(s(&c["readinessProbe"]["httpGet"]["path"]), "/readyz", "{name} readiness");
            assert_eq!(s(&c["livenessProbe"]["httpGet"]["path"]), "/healthz", "{name} liveness");
            assert!(named(&c["readinessProbe"]["httpGet"]["port"]) && named(&c["livenessProbe"]["httpGet"]["port"]));
            // A Service selects these pods and targets this port.
            let labels = &w["spec"]["template"]["metadata"]["labels"];
            assert!(selects(&w["spec"]["selector"]["matchLabels"], labels), "{name} does not select its own pods");
            let svc = services
                .iter()
                .find(|svc| selects(&svc["spec"]["selector"], labels))
                .unwrap_or_else(|| panic!("no Service selects {name}"));
            assert!(seq(&svc["spec"]["ports"]).iter().all(|p| named(&p["targetPort"])), "{name}'s Service port");
        }
    }
    assert!(seen.contains(CONTROL_PLANE) && seen.contains(DATA_PLANE));
    // The node reaches the control plane through its Service, on the port it listens on.
    let cp_service = services.iter().find(|svc| s(&svc["metadata"]["name"]) == "switchyard-control-plane").unwrap();
    let cp_url =
        format!("http://switchyard-control-plane:{}", seq(&cp_service["spec"]["ports"])[0]["port"].as_u64().unwrap());
    let node = deployments.iter().find(|d| s(&d["metadata"]["name"]) == "switchyard-data-plane").unwrap();
    let node_env = seq(&seq(&node["spec"]["template"]["spec"]["containers"])[0]["env"]);
    assert!(node_env.iter().any(|e| s(&e["name"]) == "SWITCHYARD_CONTROL_PLANE_URL" && s(&e["value"]) == cp_url));
    // HPA and PDBs point at real workloads.
    let hpa = of_kind(&objects, "HorizontalPodAutoscaler");
    assert_eq!(hpa.len(), 1);
    assert_eq!(s(&hpa[0]["spec"]["scaleTargetRef"]["name"]), "switchyard-data-plane");
    let pdbs = of_kind(&objects, "PodDisruptionBudget");
    for d in &deployments {
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert!(
            pdbs.iter().any(|p| selects(&p["spec"]["selector"]["matchLabels"], labels)),
            "no PDB for {:?}",
            d["metadata"]["name"]
        );
    }
    // kustomize's image override names the image the workloads run.
    let kustomization = yaml_docs("deploy/k8s/kustomization.yaml").remove(0);
    let image = s(&seq(&kustomization["images"])[0]["name"]).to_owned();
    for w in &workloads {
        for c in seq(&w["spec"]["template"]["spec"]["containers"]) {
            assert_eq!(s(&c["image"]).split(':').next(), Some(image.as_str()), "kustomization.yaml would not set it");
        }
    }
    let cp = deployments.iter().find(|d| s(&d["metadata"]["name"]) == "switchyard-control-plane").unwrap();
    assert!(cp["spec"]["replicas"].as_u64().unwrap() >= 2, "the control plane runs several replicas");
}

#[test]
fn alert_rules_are_well_formed() {
    let rules = yaml_docs("deploy/prometheus/alerts.yaml").remove(0);
    let mut names = BTreeSet::new();
    for group in seq(&rules["groups"]) {
        for rule in seq(&group["rules"]) {
            let alert = s(&rule["alert"]);
            assert!(alert.starts_with("Switchyard") && names.insert(alert.to_owned()), "bad or duplicate `{alert}`");
            assert!(!s(&rule["expr"]).trim().is_empty(), "{alert} has no expr");
            assert!(
                ["page", "warning", "info"].contains(&s(&rule["labels"]["severity"])),
                "{alert} needs a severity of page, warning or info"
            );
            assert!(!s(&rule["annotations"]["summary"]).is_empty(), "{alert} has no summary");
        }
    }
    for topic in ["ErrorRate", "SnapshotLag", "UsageSpool", "Budget", "Latency"] {
        assert!(names.iter().any(|n| n.contains(topic)), "no alert about {topic}");
    }
    // `promtool` where installed (Debian: `apt-get install prometheus`); the structural checks above otherwise.
    if let Ok(out) = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(repo().join("deploy/prometheus/alerts.yaml"))
        .output()
    {
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn dashboard_targets(dashboard: &Json) -> Vec<&Json> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().map(Vec::as_slice).unwrap_or_default())
        .collect()
}

/// Sample names of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

async fn dashboard_and_alerts_name_only_exported_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "observed").await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    // Traffic: a plain and a streamed completion, and a refused key.
    assert_eq!(node.chat(&tenant.key, &chat_body("observed", false)).await.status(), StatusCode::OK);
    let streamed = node.chat(&tenant.key, &chat_body("observed", true)).await;
    assert_eq!(streamed.status(), StatusCode::OK);
    streamed.bytes().await.unwrap();
    assert_eq!(node.chat("sk-wrong", &chat_body("observed", false)).await.status(), StatusCode::UNAUTHORIZED);

    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.client.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
        let res = app.client.get(format!("{}{path}", node.address)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "node {path}");
    }
    let scrape = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let cp_text = scrape(app.url("/metrics")).await;
    let node_text = scrape(format!("{}/metrics", node.address)).await;
    // The node counts as current or, if its poll confirming the last version is still on its way, lagging.
    let alive: u64 = cp_text
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_cp_nodes{state=\"current\"}")
                || l.starts_with("switchyard_cp_nodes{state=\"lagging\"}")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(alive, 1, "{cp_text}");
    let mut names = exported(&cp_text);
    names.extend(exported(&node_text));

    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/dashboards/switchyard.json")).unwrap();
    let mut used = BTreeSet::new();
    for target in dashboard_targets(&dashboard) {
        used.extend(metric_names(target["expr"].as_str().unwrap()));
    }
    let missing: Vec<_> = used.iter().filter(|m| !names.contains(*m)).collect();
    assert!(missing.is_empty(), "the dashboard names metrics no binary exports: {missing:?}\nexported: {names:?}");

    let rules = yaml_docs("deploy/prometheus/alerts.yaml").remove(0);
    let exprs: Vec<String> =
        seq(&rules["groups"]).iter().flat_map(|g| seq(&g["rules"])).map(|r| s(&r["expr"]).to_owned()).collect();
    let missing: Vec<_> = exprs.iter().flat_map(|e| metric_names(e)).filter(|m| !names.contains(m)).collect();
    assert!(missing.is_empty(), "alert rules name metrics no binary exports: {missing:?}");

    // The catalogue in OPERATIONS.md documents every exported family.
    let ops = read("deploy/OPERATIONS.md");
    for name in &names {
        let family =
            ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, suf| n.strip_suffix(suf).unwrap_or(n));
        assert!(ops.contains(&format!("`{family}`")), "deploy/OPERATIONS.md does not document `{family}`");
    }
    node.stop().await;
}

/// The binary as a child process: `migrate` on a fresh Postgres database (then nothing left to do), and `probe`
/// against a live control plane and a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_probe_subcommands_run_as_child_processes() {
    let bin = env!("CARGO_BIN_EXE_switchyard-control-plane");
    let database = TestDatabase::create(Backend::Postgres).await;
    let migrate = || {
        tokio::process::Command::new(bin)
            .arg("migrate")
            .env("SWITCHYARD_DATABASE_URL", &database.url)
            .env("RUST_LOG", "warn")
            .output()
    };
    let first = migrate().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}{}", String::from_utf8_lossy(&first.stderr));
    assert!(!stdout.starts_with("0 "), "a fresh database has migrations to apply: {stdout}");
    let again = migrate().await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 migration(s) applied"));

    let app = spawn_app_with(database.clone(), |_| {}).await;
    let probe = |url: String| tokio::process::Command::new(bin).arg("probe").arg(url).output();
    let ok = probe(app.url("/readyz")).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let missing = probe(app.url("/no-such-path")).await.unwrap();
    assert!(!missing.status.success(), "a 404 must fail the probe");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = probe(format!("http://127.0.0.1:{closed}/readyz")).await.unwrap();
    assert!(!refused.status.success(), "a closed port must fail the probe");
}

/// The control plane's readiness follows its database: ready while Postgres answers, 503 once it is gone, while
/// liveness stays 200 (restarting would not bring the database back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_readiness_follows_the_database() {
    use sea_orm::ConnectionTrait as _;
    let app = spawn_app(Backend::Postgres).await;
    let status = |path: &'static str| {
        let req = app.client.get(app.url(path));
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status("/readyz").await, StatusCode::OK);
    let name = app.database.url.rsplit('/').next().unwrap().to_owned();
    let admin =
        sea_orm::Database::connect(format!("{}/postgres", crate::helpers::postgres_server_url())).await.unwrap();
    admin.execute_unprepared(&format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#)).await.unwrap();
    assert_eq!(status("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status("/healthz").await, StatusCode::OK);
    assert_eq!(status("/metrics").await, StatusCode::SERVICE_UNAVAILABLE);
}

backend_tests!(dashboard_and_alerts_name_only_exported_metrics);

/// The runtime stage of the Dockerfile (after its last `FROM`), read the way the engine reads it.
#[derive(Debug, Default)]
struct ImageRuntime {
    env: Vec<(String, String)>,
    user: Option<(u32, u32)>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

impl ImageRuntime {
    fn parse(dockerfile: &str) -> Self {
        // Join continuation lines, then keep what follows the last FROM.
        let joined = dockerfile.replace("\\\n", " ");
        let stage = joined.rsplit_once("\nFROM ").map_or(joined.as_str(), |(_, s)| s);
        let json_array = |s: &str| -> Vec<String> {
            serde_json::from_str(&s[s.find('[').expect("exec form")..]).expect("exec-form JSON array")
        };
        let mut image = Self::default();
        for line in stage.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("ENV ") {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV k=v");
                    image.env.push((k.to_owned(), v.to_owned()));
                }
            } else if let Some(rest) = line.strip_prefix("USER ") {
                let (u, g) = rest.split_once(':').unwrap_or((rest, rest));
                image.user = Some((u.trim().parse().expect("numeric uid"), g.trim().parse().expect("numeric gid")));
            } else if let Some(rest) = line.strip_prefix("CMD ") {
                image.cmd = json_array(rest);
            } else if line.starts_with("HEALTHCHECK ") {
                image.healthcheck = json_array(line.split_once(" CMD ").expect("HEALTHCHECK … CMD [..]").1);
            }
        }
        image
    }
}

/// No container engine runs on CI machines and no image registry is reachable, so the image itself is not built
/// in the suite. This test runs the image's runtime contract instead: the default `CMD` with the image's `ENV`, as
/// the image's numeric `USER`, with the binary copied the way the final stage copies it and the state directory
/// owned by that user; the `HEALTHCHECK` command must then pass. Paths under `/var/lib/switchyard` map to a
/// temporary directory and the listen port to a free one (no fixed ports in tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_cmd_and_healthcheck_work_as_its_non_root_user() {
    use std::os::unix::fs::MetadataExt as _;
    let image = ImageRuntime::parse(&read("Dockerfile"));
    let (uid, gid) = image.user.expect("the runtime stage sets USER uid:gid");
    assert_ne!(uid, 0, "the image must not run as root");
    assert_eq!(image.cmd.first().map(String::as_str), Some(CONTROL_PLANE), "default command: {:?}", image.cmd);
    assert_eq!(image.healthcheck.first().map(String::as_str), Some(CONTROL_PLANE), "{:?}", image.healthcheck);

    let root = tempfile::tempdir().unwrap();
    let bin_dir = root.path().join("usr-local-bin");
    let state = root.path().join("var-lib-switchyard");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let bin = bin_dir.join(CONTROL_PLANE);
    std::fs::copy(env!("CARGO_BIN_EXE_switchyard-control-plane"), &bin).unwrap();
    // As root (CI), drop to the image's user exactly; otherwise the current (non-root) user stands in for it.
    let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if as_root {
        for dir in [root.path(), bin_dir.as_path(), state.as_path()] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        }
        std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let localise = |v: &str| -> String {
        let v = v.replace("/var/lib/switchyard", state.to_str().unwrap());
        if v.starts_with("0.0.0.0:8081") {
            format!("127.0.0.1:{port}")
        } else {
            v.replace(":8081/", &format!(":{port}/"))
        }
    };
    let command = |argv: &[String]| {
        let mut c = tokio::process::Command::new(&bin);
        c.args(argv[1..].iter().map(|a| localise(a))).env_clear().current_dir(&state).kill_on_drop(true);
        c.env("RUST_LOG", "warn").env("PATH", "/usr/bin:/bin");
        for (k, v) in &image.env {
            c.env(k, localise(v));
        }
        if as_root {
            c.uid(uid).gid(gid);
        }
        c
    };
    let mut server = command(&image.cmd).stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let check = command(&image.healthcheck).output().await.unwrap();
        if check.status.success() {
            break;
        }
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the image's CMD exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HEALTHCHECK never passed: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The embedded default wrote its database and generated secrets into the state directory, owned by the user.
    let written: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap()).collect();
    assert!(!written.is_empty(), "nothing written to the state directory");
    if as_root {
        for entry in &written {
            assert_eq!(entry.metadata().unwrap().uid(), uid, "{:?} is not owned by the image user", entry.path());
        }
    }
    server.kill().await.unwrap();
}
