//! `kiln-stacks`: the Dockerfile wizard's stack detection and Dockerfile
//! generation, shared by the `wizard` builder and the `wizard-detect`
//! detector. Plain functions over a directory, so they run the same in the
//! sandbox (`/context`) and in native tests (the fixture apps in
//! `examples/wizard/`).
//!
//! Rules are tried in order and the first that matches decides; each
//! match records the files that decided it.

use std::collections::BTreeMap;
use std::path::Path;

/// What to say when nothing matched.
pub const NOTHING_DETECTED: &str = "no Dockerfile, and nothing the wizard recognizes: add a Dockerfile, or one of package.json, requirements.txt / pyproject.toml / *.py, go.mod, Cargo.toml, pom.xml / build.gradle, Gemfile, composer.json, index.html, a Procfile, or start.sh";

/// One buildable directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub path: String,
    pub stack: String,
    pub variant: String,
    pub reasons: Vec<String>,
    pub has_dockerfile: bool,
    pub dockerfile: String,
    pub dockerignore: String,
    pub port: Option<u16>,
}

/// Base images per stack, with the operator's overrides applied.
#[derive(Debug, Clone)]
pub struct BaseImages(BTreeMap<String, String>);

impl BaseImages {
    pub fn with_overrides(overrides: &[(String, String)]) -> Self {
        let mut map: BTreeMap<String, String> = [
            ("node", "node:22-bookworm-slim"),
            ("python", "python:3.12-slim-bookworm"),
            ("go", "golang:1.23-bookworm"),
            ("go-runtime", "gcr.io/distroless/static-debian12:nonroot"),
            ("rust", "rust:1-bookworm"),
            ("rust-runtime", "debian:bookworm-slim"),
            ("maven", "maven:3-eclipse-temurin-21"),
            ("gradle", "gradle:8-jdk21"),
            ("java-runtime", "eclipse-temurin:21-jre"),
            ("ruby", "ruby:3.3-slim-bookworm"),
            ("php", "php:8.3-cli-bookworm"),
            ("composer", "composer:2"),
            ("static", "nginxinc/nginx-unprivileged:1.27-alpine"),
            ("shell", "debian:bookworm-slim"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (stack, image) in overrides {
            map.insert(stack.clone(), image.clone());
        }
        BaseImages(map)
    }

    fn get(&self, stack: &str) -> &str {
        self.0.get(stack).map(String::as_str).unwrap_or("scratch")
    }
}

fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

/// `package.json`, parsed: what the Node rule reads of it.
#[derive(Debug, Default, serde::Deserialize)]
struct PackageJson {
    #[serde(default)]
    main: Option<String>,
    #[serde(default)]
    scripts: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    dependencies: BTreeMap<String, serde_json::Value>,
}

/// Parse a JSON manifest; a broken one reads as empty, and says so in the
/// reasons (the build would fail on it anyway, with the tool's own message).
fn parse_json<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    file: &str,
    reasons: &mut Vec<String>,
) -> T {
    serde_json::from_str(text).unwrap_or_else(|e| {
        reasons.push(format!("{file} is not valid JSON ({e}); read as empty"));
        T::default()
    })
}

/// Parse a TOML manifest as a table; a broken one reads as empty, and says so.
fn parse_toml(text: &str, file: &str, reasons: &mut Vec<String>) -> toml::Table {
    text.parse::<toml::Table>().unwrap_or_else(|e| {
        reasons.push(format!(
            "{file} is not valid TOML ({}); read as empty",
            e.message()
        ));
        toml::Table::new()
    })
}

/// The string at a dotted path of a TOML table (`package.name`).
fn toml_str<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut table = table;
    for key in parents {
        table = table.get(*key)?.as_table()?;
    }
    table.get(*last)?.as_str()
}

/// Whether a TOML table has a table at this dotted path (`tool.poetry`).
fn toml_has_table(table: &toml::Table, path: &[&str]) -> bool {
    let mut table = table;
    for key in path {
        match table.get(*key).and_then(toml::Value::as_table) {
            Some(inner) => table = inner,
            None => return false,
        }
    }
    true
}

/// The common part of every generated `.dockerignore`.
const IGNORE_COMMON: &str = ".git\n.dockerignore\nDockerfile*\n*.log\n.env\n";

fn dockerignore(extra: &[&str]) -> String {
    let mut text = String::from(IGNORE_COMMON);
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What `dir` (relative path `rel`) is, or `None` when no rule matches.
pub fn detect_dir(root: &Path, rel: &str, bases: &BaseImages) -> Option<Detected> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let own_dockerfile = read(&dir, "Dockerfile");
    let mut found = detect_stack(&dir, bases);
    match (&mut found, own_dockerfile) {
        (Some(found), Some(text)) => {
            found
                .reasons
                .insert(0, "Dockerfile found: it is used as is".into());
            found.has_dockerfile = true;
            found.dockerfile = text;
        }
        (None, Some(text)) => {
            found = Some(Detected {
                path: String::new(),
                stack: "dockerfile".into(),
                variant: String::new(),
                reasons: vec!["Dockerfile found: it is used as is".into()],
                has_dockerfile: true,
                dockerfile: text,
                dockerignore: read(&dir, ".dockerignore").unwrap_or_default(),
                port: None,
            });
        }
        _ => {}
    }
    found.map(|mut d| {
        d.path = rel.to_string();
        d
    })
}

fn detect_stack(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let rules: [fn(&Path, &BaseImages) -> Option<Detected>; 11] = [
        node,
        python,
        go,
        rust,
        java_maven,
        java_gradle,
        ruby,
        php,
        static_site,
        procfile,
        shell,
    ];
    rules.iter().find_map(|rule| rule(dir, bases))
}

fn detected(
    stack: &str,
    variant: &str,
    reasons: Vec<String>,
    dockerfile: String,
    ignore: &[&str],
    port: Option<u16>,
) -> Option<Detected> {
    Some(Detected {
        path: String::new(),
        stack: stack.into(),
        variant: variant.into(),
        reasons,
        has_dockerfile: false,
        dockerfile,
        dockerignore: dockerignore(ignore),
        port,
    })
}

fn node(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let text = read(dir, "package.json")?;
    let mut reasons = vec!["package.json → Node.js".to_string()];
    let package: PackageJson = parse_json(&text, "package.json", &mut reasons);
    let (variant, lock, install, run) = if exists(dir, "pnpm-lock.yaml") {
        reasons.push("pnpm-lock.yaml → pnpm".into());
        (
            "pnpm",
            "pnpm-lock.yaml",
            "corepack enable && pnpm install --frozen-lockfile",
            "pnpm",
        )
    } else if exists(dir, "yarn.lock") {
        reasons.push("yarn.lock → yarn".into());
        (
            "yarn",
            "yarn.lock",
            "corepack enable && yarn install --frozen-lockfile",
            "yarn",
        )
    } else if exists(dir, "package-lock.json") {
        reasons.push("package-lock.json → npm ci".into());
        ("npm", "package-lock.json", "npm ci", "npm")
    } else {
        reasons.push("no lock file → npm install".into());
        ("npm", "", "npm install", "npm")
    };
    let framework = ["next", "nuxt", "@remix-run/serve", "express", "fastify"]
        .into_iter()
        .find(|name| package.dependencies.contains_key(*name));
    if let Some(framework) = framework {
        reasons.push(format!("dependencies.{framework} → {framework}"));
    }
    let build = package.scripts.get("build").map(|_| {
        reasons.push(format!("scripts.build → `{run} run build`"));
        format!("RUN {run} run build\n")
    });
    let start = if package.scripts.contains_key("start") {
        reasons.push(format!("scripts.start → `{run} start`"));
        format!("CMD [\"{run}\", \"start\"]")
    } else {
        // `main` goes into the Dockerfile's CMD: a path, nothing that could
        // end the JSON string or the line.
        let main = package
            .main
            .clone()
            .filter(|m| {
                !m.is_empty() && !m.chars().any(|c| c.is_control() || c == '"' || c == '\\')
            })
            .unwrap_or_else(|| "index.js".into());
        reasons.push(format!("no start script → `node {main}`"));
        format!("CMD [\"node\", \"{main}\"]")
    };
    let port = 3000;
    let lock_copy = if lock.is_empty() {
        String::new()
    } else {
        format!(" {lock}")
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Node.js ({variant}).\n\
FROM {base} AS build\n\
WORKDIR /app\n\
COPY package.json{lock_copy} ./\n\
RUN {install}\n\
COPY . .\n\
{build}\
FROM {base}\n\
WORKDIR /app\n\
ENV NODE_ENV=production PORT={port}\n\
COPY --from=build --chown=10001:10001 /app /app\n\
{corepack}\
USER 10001\n\
EXPOSE {port}\n\
{start}\n",
        base = bases.get("node"),
        build = build.unwrap_or_default(),
        corepack = if run == "npm" {
            ""
        } else {
            "RUN corepack enable\n"
        },
    );
    detected(
        "node",
        variant,
        reasons,
        dockerfile,
        &["node_modules", ".next", "dist", "coverage"],
        Some(port),
    )
}

fn python(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let pyproject_text = read(dir, "pyproject.toml");
    let entry = ["app.py", "main.py", "server.py", "wsgi.py", "manage.py"]
        .into_iter()
        .find(|f| exists(dir, f));
    let has_requirements = exists(dir, "requirements.txt");
    if pyproject_text.is_none() && !has_requirements && !exists(dir, "Pipfile") && entry.is_none() {
        return None;
    }
    let mut reasons = Vec::new();
    let pyproject = pyproject_text
        .as_deref()
        .map(|text| parse_toml(text, "pyproject.toml", &mut reasons));
    let (variant, deps) = if exists(dir, "poetry.lock")
        || pyproject
            .as_ref()
            .is_some_and(|p| toml_has_table(p, &["tool", "poetry"]))
    {
        reasons.push("pyproject.toml with [tool.poetry] / poetry.lock → Poetry".into());
        (
            "poetry",
            "COPY pyproject.toml poetry.lock* ./\nRUN pip install --no-cache-dir poetry && poetry config virtualenvs.create false && poetry install --only main --no-root --no-interaction\n".to_string(),
        )
    } else if exists(dir, "uv.lock") {
        reasons.push("uv.lock → uv".into());
        (
            "uv",
            "COPY pyproject.toml uv.lock ./\nRUN pip install --no-cache-dir uv && uv export --frozen --no-dev -o requirements.txt && pip install --no-cache-dir -r requirements.txt\n".to_string(),
        )
    } else if has_requirements {
        reasons.push("requirements.txt → pip".into());
        (
            "pip",
            "COPY requirements.txt ./\nRUN pip install --no-cache-dir -r requirements.txt\n"
                .to_string(),
        )
    } else if pyproject.is_some() {
        reasons.push("pyproject.toml → pip install .".into());
        ("pip", "COPY pyproject.toml ./\n".to_string())
    } else {
        reasons.push(format!(
            "{} and no dependency file → Python, standard library only",
            entry.unwrap_or("*.py")
        ));
        ("stdlib", String::new())
    };
    let requirements = read(dir, "requirements.txt")
        .unwrap_or_default()
        .to_lowercase()
        + &pyproject_text.clone().unwrap_or_default().to_lowercase();
    let (cmd, port) = if entry == Some("manage.py") {
        reasons.push("manage.py → Django".into());
        (
            "CMD [\"python3\", \"manage.py\", \"runserver\", \"0.0.0.0:8000\"]".to_string(),
            8000,
        )
    } else if requirements.contains("uvicorn") || requirements.contains("fastapi") {
        let module = entry.unwrap_or("main.py").trim_end_matches(".py");
        reasons.push(format!("uvicorn/fastapi → `uvicorn {module}:app`"));
        (
            format!("CMD [\"uvicorn\", \"{module}:app\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\"]"),
            8000,
        )
    } else if requirements.contains("gunicorn") {
        let module = entry.unwrap_or("app.py").trim_end_matches(".py");
        reasons.push(format!("gunicorn → `gunicorn {module}:app`"));
        (
            format!("CMD [\"gunicorn\", \"--bind\", \"0.0.0.0:8000\", \"{module}:app\"]"),
            8000,
        )
    } else {
        let entry = entry.unwrap_or("main.py");
        reasons.push(format!("{entry} → `python3 {entry}`"));
        (format!("CMD [\"python3\", \"{entry}\"]"), 8000)
    };
    let install_project = if variant == "pip" && pyproject.is_some() && !has_requirements {
        "COPY . .\nRUN pip install --no-cache-dir .\n"
    } else {
        "COPY . .\n"
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Python ({variant}).\n\
FROM {base}\n\
WORKDIR /app\n\
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT={port}\n\
{deps}\
{install_project}\
RUN chown -R 10001:10001 /app\n\
USER 10001\n\
EXPOSE {port}\n\
{cmd}\n",
        base = bases.get("python"),
    );
    detected(
        "python",
        variant,
        reasons,
        dockerfile,
        &["__pycache__", "*.pyc", ".venv", "venv", ".pytest_cache"],
        Some(port),
    )
}

fn go(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let module = read(dir, "go.mod")?;
    let mut reasons = vec!["go.mod → Go modules".to_string()];
    let name = module
        .lines()
        .find_map(|l| l.strip_prefix("module "))
        .map(|m| m.trim().rsplit('/').next().unwrap_or("app").to_string())
        .unwrap_or_else(|| "app".into());
    let package = match std::fs::read_dir(dir.join("cmd")) {
        Ok(entries) => {
            let mut commands: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().join("main.go").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            commands.sort();
            match commands.first() {
                Some(first) => {
                    reasons.push(format!("cmd/{first}/main.go → builds ./cmd/{first}"));
                    format!("./cmd/{first}")
                }
                None => ".".into(),
            }
        }
        Err(_) => {
            reasons.push("main package at the root → builds .".into());
            ".".into()
        }
    };
    let sum = if exists(dir, "go.sum") { " go.sum" } else { "" };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Go.\n\
FROM {base} AS build\n\
WORKDIR /src\n\
COPY go.mod{sum} ./\n\
RUN go mod download\n\
COPY . .\n\
RUN CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /out/{name} {package}\n\
FROM {runtime}\n\
COPY --from=build /out/{name} /app/{name}\n\
USER 10001:10001\n\
EXPOSE 8080\n\
ENTRYPOINT [\"/app/{name}\"]\n",
        base = bases.get("go"),
        runtime = bases.get("go-runtime"),
    );
    detected(
        "go",
        "modules",
        reasons,
        dockerfile,
        &["bin", "vendor/**/*_test.go"],
        Some(8080),
    )
}

fn rust(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let text = read(dir, "Cargo.toml")?;
    let mut reasons = vec!["Cargo.toml → Rust (cargo)".to_string()];
    let manifest = parse_toml(&text, "Cargo.toml", &mut reasons);
    // The name goes into the Dockerfile: only what cargo allows in one.
    let name = toml_str(&manifest, &["package", "name"])
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or("app");
    if manifest.contains_key("workspace") && !manifest.contains_key("package") {
        reasons
            .push("a Cargo workspace without a root package: build a member by contextDir".into());
    }
    let lock = if exists(dir, "Cargo.lock") {
        reasons.push("Cargo.lock → --locked".into());
        " --locked"
    } else {
        ""
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Rust.\n\
FROM {base} AS build\n\
WORKDIR /src\n\
COPY . .\n\
RUN cargo build --release{lock} && cp target/release/{name} /{name}\n\
FROM {runtime}\n\
COPY --from=build /{name} /usr/local/bin/{name}\n\
USER 10001:10001\n\
EXPOSE 8080\n\
CMD [\"{name}\"]\n",
        base = bases.get("rust"),
        runtime = bases.get("rust-runtime"),
    );
    detected(
        "rust",
        "cargo",
        reasons,
        dockerfile,
        &["target"],
        Some(8080),
    )
}

fn java_runtime(bases: &BaseImages, jar_glob: &str) -> String {
    format!(
        "FROM {runtime}\n\
WORKDIR /app\n\
COPY --from=build {jar_glob} /app/app.jar\n\
USER 10001:10001\n\
EXPOSE 8080\n\
CMD [\"java\", \"-jar\", \"/app/app.jar\"]\n",
        runtime = bases.get("java-runtime"),
    )
}

fn java_maven(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let pom = read(dir, "pom.xml")?;
    let mut reasons = vec!["pom.xml → Java (Maven)".to_string()];
    if pom.contains("<modules>") {
        reasons.push("pom.xml lists <modules>: a multi-module build".into());
    }
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Java (Maven).\n\
FROM {base} AS build\n\
WORKDIR /src\n\
COPY pom.xml ./\n\
RUN mvn -B -q dependency:go-offline\n\
COPY . .\n\
RUN mvn -B -q package -DskipTests\n\
{runtime}",
        base = bases.get("maven"),
        runtime = java_runtime(bases, "/src/target/*.jar"),
    );
    detected(
        "java",
        "maven",
        reasons,
        dockerfile,
        &["target"],
        Some(8080),
    )
}

fn java_gradle(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let file = ["build.gradle.kts", "build.gradle"]
        .into_iter()
        .find(|f| exists(dir, f))?;
    let mut reasons = vec![format!("{file} → Java (Gradle)")];
    let gradle = if exists(dir, "gradlew") {
        reasons.push("gradlew → the project's wrapper".into());
        "./gradlew"
    } else {
        "gradle"
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Java (Gradle).\n\
FROM {base} AS build\n\
WORKDIR /src\n\
COPY . .\n\
RUN {gradle} --no-daemon build -x test\n\
{runtime}",
        base = bases.get("gradle"),
        runtime = java_runtime(bases, "/src/build/libs/*.jar"),
    );
    detected(
        "java",
        "gradle",
        reasons,
        dockerfile,
        &["build", ".gradle"],
        Some(8080),
    )
}

fn ruby(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    if !exists(dir, "Gemfile") {
        return None;
    }
    let mut reasons = vec!["Gemfile → Ruby (Bundler)".to_string()];
    let lock = if exists(dir, "Gemfile.lock") {
        " Gemfile.lock"
    } else {
        ""
    };
    let (cmd, port) = if exists(dir, "bin/rails") {
        reasons.push("bin/rails → Rails".into());
        (
            "CMD [\"bin/rails\", \"server\", \"-b\", \"0.0.0.0\"]".to_string(),
            3000,
        )
    } else if exists(dir, "config.ru") {
        reasons.push("config.ru → rackup".into());
        (
            "CMD [\"bundle\", \"exec\", \"rackup\", \"-o\", \"0.0.0.0\", \"-p\", \"9292\"]"
                .to_string(),
            9292,
        )
    } else {
        let entry = ["app.rb", "main.rb"]
            .into_iter()
            .find(|f| exists(dir, f))
            .unwrap_or("app.rb");
        reasons.push(format!("{entry} → `ruby {entry}`"));
        (
            format!("CMD [\"bundle\", \"exec\", \"ruby\", \"{entry}\"]"),
            4567,
        )
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: Ruby (Bundler).\n\
FROM {base}\n\
WORKDIR /app\n\
COPY Gemfile{lock} ./\n\
RUN bundle install\n\
COPY . .\n\
RUN chown -R 10001:10001 /app\n\
USER 10001\n\
EXPOSE {port}\n\
{cmd}\n",
        base = bases.get("ruby"),
    );
    detected(
        "ruby",
        "bundler",
        reasons,
        dockerfile,
        &[".bundle", "vendor/bundle", "log", "tmp"],
        Some(port),
    )
}

fn php(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    if !exists(dir, "composer.json") {
        return None;
    }
    let mut reasons = vec!["composer.json → PHP (Composer)".to_string()];
    let docroot = if exists(dir, "public/index.php") {
        reasons.push("public/index.php → document root public/".into());
        "public"
    } else {
        "."
    };
    let lock = if exists(dir, "composer.lock") {
        " composer.lock"
    } else {
        ""
    };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: PHP (Composer).\n\
FROM {composer} AS deps\n\
WORKDIR /app\n\
COPY composer.json{lock} ./\n\
RUN composer install --no-dev --no-scripts --prefer-dist --no-interaction\n\
FROM {base}\n\
WORKDIR /app\n\
COPY --from=deps /app/vendor /app/vendor\n\
COPY . .\n\
RUN chown -R 10001:10001 /app\n\
USER 10001\n\
EXPOSE 8080\n\
CMD [\"php\", \"-S\", \"0.0.0.0:8080\", \"-t\", \"{docroot}\"]\n",
        composer = bases.get("composer"),
        base = bases.get("php"),
    );
    detected(
        "php",
        "composer",
        reasons,
        dockerfile,
        &["vendor"],
        Some(8080),
    )
}

fn static_site(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let root = [
        "index.html",
        "public/index.html",
        "dist/index.html",
        "site/index.html",
    ]
    .into_iter()
    .find(|f| exists(dir, f))?;
    let source = root.trim_end_matches("index.html").trim_end_matches('/');
    let reasons = vec![format!(
        "{root} and no application manifest → a static site"
    )];
    let copy = if source.is_empty() { "." } else { source };
    let dockerfile = format!(
        "# Generated by the Kiln wizard: a static site.\n\
FROM {base}\n\
COPY --chown=101:101 {copy} /usr/share/nginx/html\n\
USER 101\n\
EXPOSE 8080\n",
        base = bases.get("static"),
    );
    detected("static", "nginx", reasons, dockerfile, &[], Some(8080))
}

fn procfile(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let text = read(dir, "Procfile")?;
    let web = text
        .lines()
        .find_map(|l| l.strip_prefix("web:"))
        .map(|c| c.trim().to_string())?;
    let reasons = vec![format!("Procfile web: `{web}`")];
    let dockerfile = format!(
        "# Generated by the Kiln wizard: the Procfile's web process.\n\
FROM {base}\n\
WORKDIR /app\n\
COPY --chown=10001:10001 . /app\n\
USER 10001\n\
EXPOSE 8080\n\
CMD [\"sh\", \"-c\", \"{}\"]\n",
        web.replace('\\', "\\\\").replace('"', "\\\""),
        base = bases.get("shell"),
    );
    detected("shell", "procfile", reasons, dockerfile, &[], Some(8080))
}

fn shell(dir: &Path, bases: &BaseImages) -> Option<Detected> {
    let named = ["start.sh", "run.sh", "main.sh", "app.sh", "entrypoint.sh"]
        .into_iter()
        .find(|f| exists(dir, f))
        .map(|f| (f.to_string(), format!("{f} → a shell app")));
    // Otherwise the one script at the root, if there is exactly one.
    let only = || {
        let scripts: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sh"))
            .collect();
        match scripts.as_slice() {
            [one] => Some((
                one.clone(),
                format!("{one}, the only script at the root → a shell app"),
            )),
            _ => None,
        }
    };
    let (script, reason) = named.or_else(only)?;
    let reasons = vec![reason];
    let dockerfile = format!(
        "# Generated by the Kiln wizard: a shell app.\n\
FROM {base}\n\
WORKDIR /app\n\
COPY --chown=10001:10001 . /app\n\
USER 10001\n\
CMD [\"sh\", \"/app/{script}\"]\n",
        base = bases.get("shell"),
    );
    detected("shell", "sh", reasons, dockerfile, &[], None)
}

/// Directories a monorepo's workspace files name, relative to `root`.
fn workspace_members(root: &Path) -> (Vec<String>, Vec<String>) {
    let mut reasons = Vec::new();
    let mut patterns: Vec<String> = Vec::new();
    if let Some(text) = read(root, "pnpm-workspace.yaml") {
        reasons.push("pnpm-workspace.yaml lists packages".into());
        patterns.extend(text.lines().filter_map(|l| {
            let item = l.trim().strip_prefix("- ")?;
            Some(item.trim().trim_matches(['"', '\'']).to_string())
        }));
    }
    if let Some(text) = read(root, "go.work") {
        reasons.push("go.work lists modules".into());
        let mut in_use = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("use (") {
                in_use = true;
            } else if in_use && line == ")" {
                in_use = false;
            } else if in_use && !line.is_empty() {
                patterns.push(line.to_string());
            } else if let Some(dir) = line.strip_prefix("use ") {
                patterns.push(dir.trim().to_string());
            }
        }
    }
    if let Some(text) = read(root, "Cargo.toml") {
        let manifest = parse_toml(&text, "Cargo.toml", &mut reasons);
        let members = manifest
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(toml::Value::as_array);
        if let Some(members) = members {
            reasons.push("Cargo.toml [workspace] members".into());
            patterns.extend(
                members
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string),
            );
        }
    }
    if let Some(text) = read(root, "pom.xml") {
        if text.contains("<modules>") {
            reasons.push("pom.xml <modules>".into());
            patterns.extend(
                text.split("<module>")
                    .skip(1)
                    .filter_map(|part| Some(part.split("</module>").next()?.trim().to_string())),
            );
        }
    }
    let mut dirs = Vec::new();
    for pattern in patterns {
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        if let Some(parent) = pattern.strip_suffix("/*").or(pattern.strip_suffix("/**")) {
            if let Ok(entries) = std::fs::read_dir(root.join(parent)) {
                let mut children: Vec<String> = entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| format!("{parent}/{}", e.file_name().to_string_lossy()))
                    .collect();
                children.sort();
                dirs.extend(children);
            }
        } else if !pattern.contains('*') && !pattern.contains("..") && root.join(pattern).is_dir() {
            dirs.push(pattern.to_string());
        }
    }
    (dirs, reasons)
}

/// Directories worth looking at for sub-projects: workspace members first,
/// then every directory up to two levels down (skipping dependency and
/// build directories).
fn candidate_dirs(root: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut dirs, reasons) = workspace_members(root);
    let members = dirs.clone();
    let skip = |name: &str| {
        name.starts_with('.')
            || matches!(
                name,
                "node_modules" | "target" | "vendor" | "dist" | "build" | "__pycache__" | "venv"
            )
    };
    let mut level: Vec<String> = vec![String::new()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for rel in &level {
            let Ok(entries) = std::fs::read_dir(if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            }) else {
                continue;
            };
            let mut children: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !skip(n))
                .map(|n| {
                    if rel.is_empty() {
                        n
                    } else {
                        format!("{rel}/{n}")
                    }
                })
                .collect();
            children.sort();
            next.extend(children);
        }
        for dir in &next {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        level = next;
    }
    (dirs, members, reasons)
}

/// The project at `path`, then (with `monorepo`) every buildable
/// sub-project. Errors say what was wrong with the request.
pub fn detect(
    root: &Path,
    path: &str,
    monorepo: bool,
    bases: &BaseImages,
) -> Result<Vec<Detected>, String> {
    let path = path.trim_matches('/');
    if path.split('/').any(|p| p == "..") {
        return Err(format!("path {path:?} leaves the context"));
    }
    let base = if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(path)
    };
    if !base.is_dir() {
        return Err(format!("path {path:?} is not a directory of the context"));
    }
    let mut out = Vec::new();
    if let Some(found) = detect_dir(root, path, bases) {
        out.push(found);
    }
    if monorepo {
        let (dirs, members, workspace_reasons) = candidate_dirs(&base);
        for dir in dirs {
            let rel = if path.is_empty() {
                dir.clone()
            } else {
                format!("{path}/{dir}")
            };
            // A directory inside one already found belongs to it (src/ of an app).
            if out
                .iter()
                .any(|p| !p.path.is_empty() && rel.starts_with(&format!("{}/", p.path)))
            {
                continue;
            }
            if let Some(mut found) = detect_dir(root, &rel, bases) {
                let listed = if members.contains(&dir) {
                    workspace_reasons.join(", ")
                } else {
                    "a sub-directory".to_string()
                };
                found.reasons.insert(0, format!("{listed} → {rel}"));
                out.push(found);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/wizard")
            .join(name)
    }

    fn root_of(name: &str) -> Detected {
        detect_dir(&fixture(name), "", &BaseImages::with_overrides(&[]))
            .unwrap_or_else(|| panic!("{name}: nothing detected"))
    }

    /// `first` appears in the Dockerfile before `second`.
    fn before(dockerfile: &str, first: &str, second: &str) -> bool {
        match (dockerfile.find(first), dockerfile.find(second)) {
            (Some(a), Some(b)) => a < b,
            _ => false,
        }
    }

    #[test]
    fn every_stack_gets_the_dockerfile_its_detection_promises() {
        // (fixture, stack, tool, a reason that must be given, lines the Dockerfile must have)
        let cases: &[(&str, &str, &str, &str, &[&str])] = &[
            (
                "node-npm",
                "node",
                "npm",
                "package-lock.json",
                &["RUN npm ci", "CMD [\"npm\", \"start\"]", "EXPOSE 3000"],
            ),
            (
                "node-pnpm",
                "node",
                "pnpm",
                "pnpm-lock.yaml",
                &[
                    "pnpm install --frozen-lockfile",
                    "RUN pnpm run build",
                    "CMD [\"pnpm\", \"start\"]",
                ],
            ),
            (
                "node-yarn",
                "node",
                "yarn",
                "yarn.lock",
                &[
                    "yarn install --frozen-lockfile",
                    "CMD [\"node\", \"index.js\"]",
                ],
            ),
            (
                "python-pip",
                "python",
                "pip",
                "requirements.txt",
                &["pip install --no-cache-dir -r requirements.txt", "gunicorn"],
            ),
            (
                "python-poetry",
                "python",
                "poetry",
                "poetry",
                &["poetry install --only main", "uvicorn\", \"main:app"],
            ),
            (
                "python-uv",
                "python",
                "uv",
                "uv.lock",
                &["uv export --frozen", "CMD [\"python3\", \"main.py\"]"],
            ),
            (
                "python-stdlib",
                "python",
                "stdlib",
                "standard library",
                &["CMD [\"python3\", \"app.py\"]"],
            ),
            (
                "go",
                "go",
                "modules",
                "cmd/hello",
                &["go build", "./cmd/hello", "ENTRYPOINT [\"/app/hello-go\"]"],
            ),
            (
                "rust",
                "rust",
                "cargo",
                "Cargo.lock",
                &[
                    "cargo build --release --locked",
                    "target/release/hello-rust",
                ],
            ),
            (
                "java-maven",
                "java",
                "maven",
                "pom.xml",
                &["mvn -B -q package -DskipTests", "java\", \"-jar"],
            ),
            (
                "java-gradle",
                "java",
                "gradle",
                "gradlew",
                &["./gradlew --no-daemon build -x test", "build/libs/*.jar"],
            ),
            (
                "ruby",
                "ruby",
                "bundler",
                "config.ru",
                &["bundle install", "rackup"],
            ),
            (
                "php",
                "php",
                "composer",
                "public/index.php",
                &["composer install --no-dev", "-t\", \"public"],
            ),
            (
                "static",
                "static",
                "nginx",
                "index.html",
                &[
                    "COPY --chown=101:101 . /usr/share/nginx/html",
                    "EXPOSE 8080",
                ],
            ),
            (
                "shell",
                "shell",
                "sh",
                "start.sh",
                &["CMD [\"sh\", \"/app/start.sh\"]"],
            ),
            (
                "procfile",
                "shell",
                "procfile",
                "Procfile web",
                &["./serve.sh --port 8080"],
            ),
        ];
        for (name, stack, tool, reason, lines) in cases {
            let found = root_of(name);
            assert_eq!(
                (found.stack.as_str(), found.variant.as_str()),
                (*stack, *tool),
                "{name}"
            );
            assert!(
                found.reasons.iter().any(|r| r.contains(reason)),
                "{name}: {:?}",
                found.reasons
            );
            assert!(!found.has_dockerfile, "{name}");
            for line in *lines {
                assert!(
                    found.dockerfile.contains(line),
                    "{name}: {line}\n{}",
                    found.dockerfile
                );
            }
            // A non-root user, and the dependency files before the sources.
            assert!(found.dockerfile.contains("USER "), "{name}");
            assert!(found.dockerignore.contains(".git"), "{name}");
        }
        let node = root_of("node-npm").dockerfile;
        assert!(
            before(&node, "COPY package.json package-lock.json", "COPY . ."),
            "{node}"
        );
        let python = root_of("python-pip").dockerfile;
        assert!(
            before(&python, "COPY requirements.txt", "COPY . ."),
            "{python}"
        );
        assert!(root_of("node-npm").dockerignore.contains("node_modules"));
    }

    #[test]
    fn an_existing_dockerfile_is_used_and_the_stack_still_explained() {
        let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
        let found = detect_dir(&hello, "", &BaseImages::with_overrides(&[])).unwrap();
        assert!(found.has_dockerfile);
        assert_eq!(found.stack, "shell");
        assert!(found.dockerfile.contains("COPY hello.sh /app/hello.sh"));
        assert!(found.reasons[0].contains("Dockerfile found"));
        assert!(
            found.reasons[1].contains("hello.sh, the only script"),
            "{:?}",
            found.reasons
        );
    }

    #[test]
    fn base_images_come_from_the_operator() {
        let bases = BaseImages::with_overrides(&[(
            "python".into(),
            "mirror.example.com/library/python:3.12".into(),
        )]);
        let found = detect_dir(&fixture("python-stdlib"), "", &bases).unwrap();
        assert!(found
            .dockerfile
            .contains("FROM mirror.example.com/library/python:3.12"));
    }

    #[test]
    fn nothing_to_detect_is_none_and_bad_paths_are_refused() {
        let bases = BaseImages::with_overrides(&[]);
        assert!(detect_dir(&fixture("empty"), "", &bases).is_none());
        let root = fixture("monorepo-mixed");
        assert!(detect(&root, "../etc", false, &bases).is_err());
        assert!(detect(&root, "no/such/dir", false, &bases).is_err());
    }

    #[test]
    fn monorepos_list_every_buildable_sub_project() {
        let bases = BaseImages::with_overrides(&[]);
        let paths = |name: &str| -> Vec<(String, String, bool)> {
            detect(&fixture(name), "", true, &bases)
                .unwrap()
                .into_iter()
                .map(|p| (p.path, p.stack, p.has_dockerfile))
                .collect()
        };
        let s = |p: &str, st: &str, d: bool| (p.to_string(), st.to_string(), d);
        assert_eq!(
            paths("monorepo-pnpm"),
            [
                s("", "node", false),
                s("packages/api", "node", false),
                s("packages/web", "static", false)
            ]
        );
        assert_eq!(
            paths("monorepo-mixed"),
            [
                s("services/worker", "go", false),
                s("services/api", "dockerfile", true),
                s("tools/cli", "rust", false)
            ]
        );
        assert_eq!(
            paths("monorepo-cargo"),
            [
                s("", "rust", false),
                s("crates/server", "rust", false),
                s("crates/worker", "rust", false)
            ]
        );
        assert_eq!(
            paths("monorepo-maven"),
            [
                s("", "java", false),
                s("app", "java", false),
                s("lib", "java", false)
            ]
        );
        let mixed = detect(&fixture("monorepo-mixed"), "", true, &bases).unwrap();
        assert!(
            mixed[0].reasons[0].contains("go.work"),
            "{:?}",
            mixed[0].reasons
        );
        assert!(mixed[1].dockerfile.contains("CMD [\"echo\", \"api\"]"));
    }

    fn detect_files(files: &[(&str, &str)]) -> Detected {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        detect_dir(dir.path(), "", &BaseImages::with_overrides(&[])).expect("detected")
    }

    /// Regression (#11): package.json is parsed, not searched. A `"main"`
    /// inside `scripts` or a dependency named in `devDependencies` used to
    /// be taken for the real thing.
    #[test]
    fn issue_11_package_json_is_parsed_not_searched() {
        let found = detect_files(&[(
            "package.json",
            r#"{
              "scripts": { "main": "not-this.js", "test": "jest" },
              "devDependencies": { "express": "4" },
              "main": "server/app.js"
            }"#,
        )]);
        assert!(
            found
                .dockerfile
                .contains(r#"CMD ["node", "server/app.js"]"#),
            "{}",
            found.dockerfile
        );
        assert!(!found.reasons.iter().any(|r| r.contains("express")));
        assert!(!found.dockerfile.contains("run build"));
    }

    #[test]
    fn manifest_values_cannot_inject_dockerfile_lines() {
        let found = detect_files(&[("package.json", r#"{ "main": "x.js\"]\nRUN curl evil" }"#)]);
        assert!(found.dockerfile.contains(r#"CMD ["node", "index.js"]"#));
        assert!(!found.dockerfile.contains("evil"));
        let found = detect_files(&[("Cargo.toml", "[package]\nname = \"a\\nRUN evil\"\n")]);
        assert!(!found.dockerfile.contains("evil"), "{}", found.dockerfile);
        assert!(found.dockerfile.contains("target/release/app"));
    }

    #[test]
    fn toml_manifests_are_parsed_by_table() {
        // `name` under another table first, then the package's own.
        let found = detect_files(&[(
            "Cargo.toml",
            "[dependencies]\nname = \"wrong\"\n\n[package]\nversion = \"0.1.0\"\nname = \"svc\"\n",
        )]);
        assert!(
            found.dockerfile.contains("target/release/svc"),
            "{}",
            found.dockerfile
        );
        // `[tool.poetry]` written as a dotted key is still Poetry.
        let found = detect_files(&[
            ("pyproject.toml", "tool.poetry.name = \"x\"\n"),
            ("main.py", "print(1)\n"),
        ]);
        assert_eq!(found.variant, "poetry");
        let broken = detect_files(&[("package.json", "{ not json")]);
        assert!(broken.reasons.iter().any(|r| r.contains("not valid JSON")));
    }
}
