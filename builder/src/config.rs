//! A stage's image config (Docker's `config` object) as instructions change it, and the history
//! `created_by` text BuildKit writes for each instruction (Go's `%q`/`%v` formatting included,
//! so `docker history` of our images reads as of BuildKit's).

use serde_json::{Map, Value, json};

use crate::frontend::{CommandLine, Healthcheck, KeyValue};

/// BuildKit's PATH for images that define none (`FROM scratch`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An EXPOSE or VOLUME value an image config cannot take (BuildKit's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid containerPort: {0}")]
    InvalidPort(String),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
}

/// The config of the stage being built.
#[derive(Debug, Clone, Default)]
pub struct StageConfig {
    pub config: Map<String, Value>,
    /// Whether CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// `MAINTAINER`, when given in this stage.
    pub author: Option<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", q.join(" "))
}

/// Go's `time.Duration.String()` for whole nanoseconds.
fn go_duration(ns: u128) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else {
            format!("{}µs", ns as f64 / 1000.0)
        };
    }
    let total_s = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (total_s / 3600, (total_s / 60) % 60, total_s % 60);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:09}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

impl StageConfig {
    pub fn from_image(config: Map<String, Value>) -> StageConfig {
        let mut c = StageConfig {
            config,
            cmd_set: false,
            author: None,
        };
        if !c.env().iter().any(|(k, _)| k == "PATH") {
            c.set_env("PATH", DEFAULT_PATH);
        }
        c
    }

    pub fn env(&self) -> Vec<(String, String)> {
        strings(self.config.get("Env"))
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect()
    }

    pub fn env_list(&self) -> Vec<String> {
        strings(self.config.get("Env"))
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = strings(self.config.get("Env"));
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.config.insert("Env".into(), json!(env));
    }

    pub fn shell(&self) -> Vec<String> {
        let s = strings(self.config.get("Shell"));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    /// argv for a command line: shell form through the SHELL.
    pub fn argv(&self, cmd: &CommandLine) -> Vec<String> {
        match cmd {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }

    pub fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".into(),
        }
    }

    pub fn user(&self) -> String {
        self.config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// WORKDIR: the new absolute directory (relative paths join the current one).
    pub fn set_workdir(&mut self, path: &str) -> String {
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{}", self.workdir(), path)
        };
        let wd = format!("/{}", crate::context::clean_rel(&joined));
        self.config.insert("WorkingDir".into(), json!(wd));
        wd
    }

    fn set_map_entry(&mut self, field: &str, key: &str, value: Value) {
        let m = self
            .config
            .entry(field.to_string())
            .or_insert_with(|| json!({}));
        if !m.is_object() {
            *m = json!({});
        }
        if let Some(o) = m.as_object_mut() {
            o.insert(key.to_string(), value);
        }
    }

    pub fn env_history(kvs: &[KeyValue]) -> String {
        let mut s = String::from("ENV");
        for kv in kvs {
            s.push_str(&format!(" {}={}", kv.key, kv.value));
        }
        s
    }

    pub fn add_label(&mut self, key: &str, value: &str) {
        self.set_map_entry("Labels", key, json!(value));
    }

    /// EXPOSE: ports as `port/proto`; the history text as BuildKit's `%v` of its port map.
    pub fn expose(&mut self, ports: &[String]) -> Result<String, ConfigError> {
        let mut all = Vec::new();
        for p in ports {
            // [ip:][host:]container[/proto]; only the container part matters here.
            let (spec, proto) = match p.rsplit_once('/') {
                Some((s, pr)) => (s, pr.to_ascii_lowercase()),
                None => (p.as_str(), "tcp".to_string()),
            };
            let container = spec.rsplit(':').next().unwrap_or(spec);
            let (start, end) = match container.split_once('-') {
                Some((a, b)) => (a, b),
                None => (container, container),
            };
            let (Ok(a), Ok(b)) = (start.parse::<u16>(), end.parse::<u16>()) else {
                return Err(ConfigError::InvalidPort(container.to_string()));
            };
            if b < a {
                return Err(ConfigError::InvalidPort(container.to_string()));
            }
            for port in a..=b {
                all.push(format!("{port}/{proto}"));
            }
        }
        for p in &all {
            self.set_map_entry("ExposedPorts", p, json!({}));
        }
        all.sort();
        all.dedup();
        let inner: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
        Ok(format!("EXPOSE map[{}]", inner.join(" ")))
    }

    pub fn add_volumes(&mut self, vols: &[String]) -> Result<String, ConfigError> {
        for v in vols {
            if v.is_empty() {
                return Err(ConfigError::EmptyVolume);
            }
            self.set_map_entry("Volumes", v, json!({}));
        }
        Ok(format!("VOLUME [{}]", vols.join(" ")))
    }

    pub fn set_cmd(&mut self, cmd: &CommandLine) -> String {
        let argv = self.argv(cmd);
        self.config.insert("Cmd".into(), json!(argv));
        self.cmd_set = true;
        format!("CMD {}", go_quote_list(&argv))
    }

    pub fn set_entrypoint(&mut self, cmd: &CommandLine) -> String {
        let argv = self.argv(cmd);
        self.config.insert("Entrypoint".into(), json!(argv));
        if !self.cmd_set {
            self.config.remove("Cmd");
        }
        format!("ENTRYPOINT {}", go_quote_list(&argv))
    }

    pub fn set_shell(&mut self, shell: &[String]) -> String {
        self.config.insert("Shell".into(), json!(shell));
        format!("SHELL [{}]", shell.join(" "))
    }

    pub fn set_healthcheck(&mut self, hc: &Healthcheck) -> String {
        let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos()).unwrap_or(0);
        let (test, iv, to, sp, si, retries) = match hc {
            Healthcheck::None => (vec!["NONE".to_string()], 0, 0, 0, 0, 0),
            Healthcheck::Cmd {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test = match command {
                    CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    CommandLine::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                };
                (
                    test,
                    ns(interval),
                    ns(timeout),
                    ns(start_period),
                    ns(start_interval),
                    retries.unwrap_or(0),
                )
            }
        };
        let mut m = Map::new();
        m.insert("Test".into(), json!(test));
        for (k, v) in [
            ("Interval", iv),
            ("Timeout", to),
            ("StartPeriod", sp),
            ("StartInterval", si),
        ] {
            if v != 0 {
                m.insert(k.into(), json!(v as u64));
            }
        }
        if retries != 0 {
            m.insert("Retries".into(), json!(retries));
        }
        self.config.insert("Healthcheck".into(), Value::Object(m));
        let retries_q = match char::from_u32(retries) {
            Some(c) if !c.is_control() => format!("'{c}'"),
            _ => format!("'\\x{retries:02x}'"),
        };
        format!(
            "HEALTHCHECK &{{{} {} {} {} {} {}}}",
            go_quote_list(&test),
            go_quote(&go_duration(iv)),
            go_quote(&go_duration(to)),
            go_quote(&go_duration(sp)),
            go_quote(&go_duration(si)),
            retries_q
        )
    }

    pub fn add_onbuild(&mut self, expr: &str) {
        let mut v = strings(self.config.get("OnBuild"));
        v.push(expr.to_string());
        self.config.insert("OnBuild".into(), json!(v));
    }

    pub fn set_str(&mut self, field: &str, value: &str) {
        self.config.insert(field.into(), json!(value));
    }
}

/// `RUN` history: build args in scope as `|N K=V …`, then the argv.
pub fn run_created_by(argv: &[String], args: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    format!("RUN {} # buildkit", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_text_matches_buildkit() {
        let mut c = StageConfig::from_image(Map::new());
        assert_eq!(
            c.set_cmd(&CommandLine::Shell("echo hi".into())),
            r#"CMD ["/bin/sh" "-c" "echo hi"]"#
        );
        assert_eq!(
            c.expose(&["80".into(), "53/udp".into()]).unwrap(),
            "EXPOSE map[53/udp:{} 80/tcp:{}]"
        );
        assert_eq!(
            run_created_by(
                &["/bin/sh".into(), "-c".into(), "echo $V".into()],
                &[("V".into(), "1".into())]
            ),
            "RUN |1 V=1 /bin/sh -c echo $V # buildkit"
        );
        assert_eq!(c.set_workdir("/app"), "/app");
        assert_eq!(c.set_workdir("sub/../x"), "/app/x");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(
            c.set_healthcheck(&Healthcheck::Cmd {
                command: CommandLine::Shell("true".into()),
                interval: Some(std::time::Duration::from_secs(5)),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
            }),
            r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x03'}"#
        );
        // ENTRYPOINT drops an inherited CMD but keeps one set in the stage.
        c.set_entrypoint(&CommandLine::Exec(vec!["/bin/x".into()]));
        assert!(c.config.contains_key("Cmd"));
        let mut d = StageConfig::from_image(c.config.clone());
        d.set_entrypoint(&CommandLine::Exec(vec!["/bin/y".into()]));
        assert!(!d.config.contains_key("Cmd"));
        assert_eq!(d.env_list(), vec![format!("PATH={DEFAULT_PATH}")]);
    }
}
