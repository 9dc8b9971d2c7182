//! The build driver: plans the Dockerfile, then walks the stages the target needs in order,
//! each step either found in the cache or carried out — metadata instructions change only the
//! config, RUN/COPY/ADD/WORKDIR change the filesystem through [`fs_step`](crate::fs_step) —
//! and committed as an (unnamed) image on top of the previous step. Only the final image is
//! named in the store.

mod fs_ops;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_store::commit::StepCommit;
use berth_store::{Image, Reference, Store};
use serde_json::{Map, Value};

use crate::cache::{Cache, KeyInputs};
use crate::config::{StageConfig, run_created_by};
use crate::context::{HashMemo, SourceTree};
use crate::error::BuildError;
use crate::exec::{Executor, NetworkMode};
use crate::frontend::plan::{Base, PROXY_ARGS, PlanOptions, Stage, Step, plan};
use crate::frontend::{Command, Copy, Network, Source, parse};
use crate::fs_step::{FsOp, FsStep};
use crate::ignore::Ignore;
use crate::progress::Progress;
use crate::run_mounts::{MountPlan, MountSources, Origin, SecretSource};
use stages::{BasePins, ProgressHandle, SharedProgress, build_stages};

/// BuildKit's history comment.
const COMMENT: &str = "buildkit.dockerfile.v0";

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Where the Dockerfile is (for `<Dockerfile>.dockerignore`); inside the context usually.
    pub dockerfile_path: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label`.
    pub labels: Vec<(String, String)>,
    pub tags: Vec<Reference>,
    /// `--pull`: pull base images even when they are in the local store.
    pub pull: bool,
    /// `--secret`: id -> where its value comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: id -> SSH agent socket.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--output` without loading: the image is built (its steps cached) but not named in the
    /// store, as BuildKit's exporters do.
    pub export_only: bool,
    /// `SOURCE_DATE_EPOCH` (the environment's, or the build arg, which wins): `created` of the
    /// image and its new history entries, and the clamp for new layers' timestamps.
    pub source_date_epoch: Option<u64>,
    /// `--no-cache-filter`: stages (by name or index) whose steps ignore the cache.
    pub no_cache_filter: Vec<String>,
    /// `--cache-from`'s imported caches; also records the build for `--cache-to`.
    pub cache_io: Option<Arc<crate::cache_io::CacheIo>>,
}

/// The result of a stage: its image (None for an empty `FROM scratch`), cache key and config.
#[derive(Clone)]
pub(crate) struct StageResult {
    pub(crate) image: Option<Image>,
    pub(crate) key: String,
    pub(crate) config: StageConfig,
}

pub(crate) struct Builder<'a> {
    pub(crate) store: &'a Store,
    pub(crate) exec: &'a (dyn Executor + Sync),
    pub(crate) cache: Cache,
    /// Shared by the stages building in parallel.
    pub(crate) memo: &'a Mutex<HashMemo>,
    pub(crate) context: SourceTree,
    pub(crate) no_cache: bool,
    pub(crate) progress: Box<dyn Progress + 'a>,
    /// The number of the step being built (each stage's numbers are reserved up front, so
    /// stages building at once never share one).
    pub(crate) step_no: usize,
    /// Set when another stage failed: this one stops at its next step.
    pub(crate) abort: &'a AtomicBool,
    /// Stage names by index (`COPY --from=name`).
    pub(crate) stage_names: Vec<Option<String>>,
    /// What `RUN --mount`s draw on (context, secrets, SSH agents).
    pub(crate) mount_sources: Arc<MountSources>,
    /// `SOURCE_DATE_EPOCH`.
    pub(crate) epoch: Option<u64>,
    /// `--no-cache-filter` stages.
    pub(crate) no_cache_filter: Vec<String>,
    /// Whether the stage being built is one of them.
    pub(crate) stage_no_cache: bool,
    /// Imported caches and the build's record for export.
    pub(crate) cache_io: Option<&'a crate::cache_io::CacheIo>,
}

/// Builds the image `opts` describes; returns it, named with `opts.tags`.
pub fn build(
    store: &Store,
    exec: &(dyn Executor + Sync),
    opts: &BuildOptions,
    progress: &mut (dyn Progress + Send),
) -> Result<Image, BuildError> {
    match build_once(store, exec, opts, progress) {
        // A lazy hit from an imported cache whose layers the cache does not carry (a stage
        // exported with mode=min) turned out to be needed: build again taking only hits whose
        // layers can be had; what ran meanwhile is in the local cache.
        Err(BuildError::CacheIncomplete { reason })
            if opts.cache_io.as_ref().is_some_and(|io| !io.strict()) =>
        {
            progress.note(&format!(
                "imported cache is incomplete ({reason}): building again without its incomplete results"
            ));
            if let Some(io) = &opts.cache_io {
                io.set_strict();
            }
            build_once(store, exec, opts, progress)
        }
        r => r,
    }
}

fn build_once(
    store: &Store,
    exec: &(dyn Executor + Sync),
    opts: &BuildOptions,
    progress: &mut (dyn Progress + Send),
) -> Result<Image, BuildError> {
    let df = parse(&opts.dockerfile)?;
    crate::fs_step::clean_stale(store, exec);
    let mut plan_opts = PlanOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        ..Default::default()
    };
    // A first plan names the base images; their ENV can be used in their stages and their
    // ONBUILD triggers run in them, so the plan is made again knowing them (and again if the
    // triggers name more images).
    let mut bases: BTreeMap<String, Image> = BTreeMap::new();
    let mut plan = loop {
        let p = plan(&df, &plan_opts)?;
        let mut more = false;
        for stage in p.stages.iter().filter(|s| s.used) {
            for r in &stage.images {
                if bases.contains_key(r) {
                    continue;
                }
                // The line that names it: FROM, or the COPY --from or RUN --mount=from= that does.
                let line = stage
                    .steps
                    .iter()
                    .find(|s| match &s.instruction.command {
                        Command::Copy(c) | Command::Add(c) => c.from.as_deref() == Some(r.as_str()),
                        Command::Run(run) => run
                            .mounts
                            .iter()
                            .any(|m| m.from.as_deref() == Some(r.as_str())),
                        _ => false,
                    })
                    .map_or(stage.from.start_line, |s| s.instruction.start_line);
                let img = crate::base::resolve(store, r, opts.pull, progress).map_err(|e| {
                    BuildError::MissingImage {
                        reference: r.clone(),
                        line,
                        reason: e.to_string(),
                    }
                })?;
                let cfg = image_config(store, &img)?;
                let onbuild: Vec<String> = cfg
                    .get("OnBuild")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let env = StageConfig::from_image(cfg).env();
                plan_opts.image_env.insert(r.clone(), env);
                plan_opts.image_onbuild.insert(r.clone(), onbuild);
                bases.insert(r.clone(), img);
                more = true;
            }
        }
        if !more {
            break p;
        }
    };
    // BuildKit's own build arg: consumed by the build itself.
    plan.unconsumed_build_args
        .retain(|a| a != "SOURCE_DATE_EPOCH" && a != "BUILDKIT_DOCKERFILE_CHECK");
    let epoch = match opts.build_args.get("SOURCE_DATE_EPOCH") {
        Some(v) if !v.is_empty() => Some(v.trim().parse::<u64>().map_err(|_| BuildError::Step {
            line: 1,
            instruction: "--build-arg SOURCE_DATE_EPOCH".into(),
            message: format!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970 (a non-negative integer)"),
        })?),
        _ => opts.source_date_epoch,
    };
    // The bases stay in the store while this build stands on them, whatever `rmi` or
    // `image prune -a` does meanwhile (pins of builds that died are dropped first).
    let _bases_pinned = BasePins::new(store, &bases)?;
    if let Some(w) = plan.unconsumed_warning() {
        progress.note(&w);
    }
    let (ignore, _) = Ignore::for_build(&opts.context, &opts.dockerfile_path)?;
    let memo = Mutex::new(HashMemo::for_context(store.root(), &opts.context));
    let abort = AtomicBool::new(false);
    let shared: SharedProgress = Mutex::new(progress);
    let stage_names: Vec<Option<String>> = plan.stages.iter().map(|s| s.name.clone()).collect();
    let mount_sources = Arc::new(MountSources {
        context: opts.context.clone(),
        ignore: ignore.clone(),
        secrets: opts.secrets.clone(),
        ssh: opts.ssh.clone(),
    });
    let no_cache_filter: Vec<String> = opts
        .no_cache_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let builder = |step_no: usize| Builder {
        store,
        exec,
        cache: Cache::open(store.root()),
        memo: &memo,
        context: SourceTree {
            root: opts.context.clone(),
            ignore: ignore.clone(),
            what: "build context".into(),
        },
        no_cache: opts.no_cache,
        progress: Box::new(ProgressHandle(&shared)),
        step_no,
        abort: &abort,
        stage_names: stage_names.clone(),
        mount_sources: mount_sources.clone(),
        epoch,
        no_cache_filter: no_cache_filter.clone(),
        stage_no_cache: false,
        cache_io: opts.cache_io.as_deref(),
    };
    let multi = plan.stages.len() > 1;
    // A ticker keeps a live view's timers moving while steps are silent.
    let stop = AtomicBool::new(false);
    let built = std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            let mut handle = ProgressHandle(&shared);
            while !stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(std::time::Duration::from_millis(250));
                if !stop.load(Ordering::SeqCst) {
                    handle.tick();
                }
            }
        });
        let r = build_stages(
            &plan.stages,
            |stage, results, step_no| {
                let mut b = builder(step_no);
                b.stage(stage, multi, results, &bases)
            },
            &abort,
            &|| exec.cancel(),
        );
        stop.store(true, Ordering::SeqCst);
        ticker.thread().unpark();
        r
    });
    if let Ok(m) = memo.lock() {
        m.save();
    }
    let mut results = built?;
    let b = builder(0);
    let Some(mut last) = results[plan.target].take() else {
        return Err(BuildError::Step {
            line: 1,
            instruction: "FROM".into(),
            message: "the target stage was not built".into(),
        });
    };
    if !opts.labels.is_empty() {
        // `--label` changes the config without a history entry, as BuildKit does.
        for (k, v) in &opts.labels {
            last.config.add_label(k, v);
        }
        let inputs = KeyInputs {
            parent: last.key.clone(),
            text: "--label".into(),
            instruction: format!("--label {:?}", opts.labels),
            ..Default::default()
        };
        let img = match b.cached(&inputs) {
            Some(img) => img,
            None => {
                let img = b.commit(&last, None, String::new())?;
                b.cache.put(&inputs, &img);
                img
            }
        };
        if let Some(io) = b.cache_io {
            io.record(&inputs, &img);
        }
        last.image = Some(img);
    }
    let img = match last.image {
        Some(img) => img,
        // FROM scratch and nothing else: an image without layers.
        None => b.commit(&last, None, String::new())?,
    };
    if let Some(io) = b.cache_io {
        // The final image comes whole: its layers from the imported caches where this root
        // lacks them.
        if !store.image_complete(&img) {
            io.complete(store, &img)
                .map_err(|reason| BuildError::CacheIncomplete { reason })?;
        }
        io.settle(store, &b.cache);
    }
    if opts.export_only {
        return Ok(img);
    }
    // A Ctrl-C that came during the last step's commit still means: tag nothing.
    if exec.interrupted() {
        return Err(BuildError::Interrupted);
    }
    Ok(store.name_image(&img, &opts.tags)?)
}

pub(crate) fn image_config(store: &Store, img: &Image) -> Result<Map<String, Value>, BuildError> {
    let bytes = store.config_bytes(img)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| BuildError::Step {
        line: 0,
        instruction: "FROM".into(),
        message: format!("image {} has an unreadable config: {e}", img.short_id()),
    })?;
    Ok(v.get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

fn stage_title(stage: &Stage, multi: bool, k: usize, n: usize) -> String {
    match (&stage.name, multi) {
        (Some(name), _) => format!("{name} {k}/{n}"),
        (None, true) => format!("stage-{} {k}/{n}", stage.index),
        (None, false) => format!("{k}/{n}"),
    }
}

impl Builder<'_> {
    pub(crate) fn cached(&self, inputs: &KeyInputs) -> Option<Image> {
        if self.no_cache || self.stage_no_cache {
            return None;
        }
        let key = inputs.key();
        self.cache
            .get(&key)
            .filter(|img| self.store.image_complete(img))
            .or_else(|| self.cache_io.and_then(|io| io.lookup(self.store, &key)))
    }

    /// Before a step runs on imported results: the layers of its parent and of the stages or
    /// images it reads from come down, and its cache mounts are restored.
    fn prepare_imported(&mut self, cur: &StageResult, op: &FsOp) -> Result<(), BuildError> {
        let Some(io) = self.cache_io else {
            return Ok(());
        };
        let mut need: Vec<&Image> = cur.image.iter().collect();
        match op {
            FsOp::Copy {
                from: Some(Some(img)),
                ..
            } => need.push(img),
            FsOp::Run { mounts, .. } => {
                for m in mounts {
                    match m {
                        MountPlan::Bind {
                            origin: Origin::Root { image, .. },
                            ..
                        }
                        | MountPlan::Cache {
                            base: Some((Origin::Root { image, .. }, _)),
                            ..
                        } => need.extend(image.as_ref().as_ref()),
                        _ => {}
                    }
                    if let MountPlan::Cache { dir, .. } = m {
                        match io.restore_mount(self.store, dir) {
                            Ok(Some(from)) => self
                                .progress
                                .note(&format!("restored cache mount {} from {from}", &dir[..12])),
                            Ok(None) => {}
                            Err(e) => self.progress.note(&format!("WARNING: {e}")),
                        }
                    }
                }
            }
            _ => {}
        }
        for img in need {
            if !self.store.image_complete(img) {
                io.complete(self.store, img)
                    .map_err(|reason| BuildError::CacheIncomplete { reason })?;
            }
        }
        Ok(())
    }

    /// Commits `layer` (or none) on the stage's current image with its config.
    pub(crate) fn commit(
        &self,
        cur: &StageResult,
        layer: Option<&mut dyn std::io::Read>,
        created_by: String,
    ) -> Result<Image, BuildError> {
        let step = StepCommit {
            config: cur.config.config.clone(),
            created_by,
            comment: Some(COMMENT.into()),
            author: cur.config.author.clone(),
            epoch: self.epoch,
            ..Default::default()
        };
        Ok(self.store.commit_step(cur.image.as_ref(), layer, &step)?)
    }

    fn stage(
        &mut self,
        stage: &Stage,
        multi: bool,
        results: &[Option<StageResult>],
        bases: &BTreeMap<String, Image>,
    ) -> Result<StageResult, BuildError> {
        let total = stage.steps.len() + 1;
        self.stage_no_cache = self
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(f.as_str()) || *f == stage.index.to_string());
        self.step_no += 1;
        let from_text = stage.from.original.trim().to_string();
        self.progress.start(
            self.step_no,
            &format!("[{}] {from_text}", stage_title(stage, multi, 1, total)),
        );
        let mut cur = match &stage.base {
            Base::Scratch => StageResult {
                image: None,
                key: KeyInputs {
                    instruction: "FROM scratch".into(),
                    ..Default::default()
                }
                .key(),
                config: StageConfig::from_image(Map::new()),
            },
            Base::Image(r) => {
                let img = bases.get(r).cloned().ok_or_else(|| BuildError::Step {
                    line: stage.from.start_line,
                    instruction: from_text.clone(),
                    message: format!("base image {r} was not resolved"),
                })?;
                let cfg = image_config(self.store, &img)?;
                StageResult {
                    key: KeyInputs {
                        instruction: format!("FROM {}", img.id),
                        ..Default::default()
                    }
                    .key(),
                    image: Some(img),
                    config: StageConfig::from_image(cfg),
                }
            }
            Base::Stage(i) => {
                let mut r = results[*i].clone().ok_or_else(|| BuildError::Step {
                    line: stage.from.start_line,
                    instruction: from_text.clone(),
                    message: format!("stage {i} was not built"),
                })?;
                r.config.cmd_set = false;
                r.config.author = None;
                r
            }
        };
        // ONBUILD triggers run in this stage (the plan put them first) and are not inherited.
        cur.config.config.remove("OnBuild");
        // An epoch changes every image the stage makes (created, layer times): its own keys.
        if let Some(e) = self.epoch
            && !matches!(stage.base, Base::Stage(_))
        {
            cur.key = KeyInputs {
                parent: cur.key.clone(),
                instruction: format!("SOURCE_DATE_EPOCH={e}"),
                ..Default::default()
            }
            .key();
        }
        // The base is local and resolved: nothing to do, as BuildKit reports a resolved base.
        if self.no_cache || self.stage_no_cache {
            self.progress.done(self.step_no);
        } else {
            self.progress.cached(self.step_no);
        }
        let mut ran = false;
        for (i, step) in stage.steps.iter().enumerate() {
            if self.exec.interrupted() || self.abort.load(Ordering::SeqCst) {
                return Err(BuildError::Interrupted);
            }
            self.step_no += 1;
            let n = self.step_no;
            let text = step.instruction.original.trim().to_string();
            self.progress.start(
                n,
                &format!("[{}] {text}", stage_title(stage, multi, i + 2, total)),
            );
            match self.step(&mut cur, step, results, bases, n, ran) {
                Ok(true) => {
                    ran = true;
                    self.progress.done(n);
                }
                Ok(false) => self.progress.cached(n),
                Err(_) if self.exec.interrupted() => {
                    self.progress.error(n, "interrupted");
                    return Err(BuildError::Interrupted);
                }
                Err(e) => {
                    self.progress.error(n, &e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(cur)
    }

    /// One step: applies it to `cur`. `Ok(true)` when it ran, `Ok(false)` when cached.
    fn step(
        &mut self,
        cur: &mut StageResult,
        step: &Step,
        results: &[Option<StageResult>],
        bases: &BTreeMap<String, Image>,
        n: usize,
        parent_ran: bool,
    ) -> Result<bool, BuildError> {
        let ins = &step.instruction;
        let err = |message: String| BuildError::Step {
            line: ins.start_line,
            instruction: ins.original.trim().to_string(),
            message,
        };
        let mut inputs = KeyInputs {
            parent: cur.key.clone(),
            text: ins.original.trim().to_string(),
            instruction: format!("{:?}", ins.command),
            ..Default::default()
        };
        // The config effect (always applied: later steps need it whether or not this one is
        // cached), the history text, and what the filesystem needs, if anything.
        let (created_by, op): (String, Option<FsOp>) = match &ins.command {
            Command::Env(kvs) => {
                for kv in kvs {
                    cur.config.set_env(&kv.key, &kv.value);
                }
                (StageConfig::env_history(kvs), None)
            }
            Command::Arg(arg) => {
                let parts: Vec<String> = arg
                    .args
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    })
                    .collect();
                (format!("ARG {}", parts.join(" ")), None)
            }
            Command::Label(kvs) => {
                let mut s = String::from("LABEL");
                for kv in kvs {
                    cur.config.add_label(&kv.key, &kv.value);
                    s.push_str(&format!(" {}={}", kv.key, kv.value));
                }
                (s, None)
            }
            Command::Maintainer(m) => {
                cur.config.author = Some(m.clone());
                (format!("MAINTAINER {m}"), None)
            }
            Command::Expose(ports) => (
                cur.config.expose(ports).map_err(|e| err(e.to_string()))?,
                None,
            ),
            Command::User(u) => {
                cur.config.set_str("User", u);
                (format!("USER {u}"), None)
            }
            Command::Volume(v) => (
                cur.config.add_volumes(v).map_err(|e| err(e.to_string()))?,
                None,
            ),
            Command::Stopsignal(s) => {
                cur.config.set_str("StopSignal", s);
                (format!("STOPSIGNAL {s}"), None)
            }
            Command::Cmd(c) => (cur.config.set_cmd(c), None),
            Command::Entrypoint(c) => (cur.config.set_entrypoint(c), None),
            Command::Shell(s) => (cur.config.set_shell(s), None),
            Command::Healthcheck(h) => (cur.config.set_healthcheck(h), None),
            Command::Onbuild(o) => {
                cur.config.add_onbuild(&o.expression);
                (format!("ONBUILD {}", o.expression), None)
            }
            Command::Workdir(p) => {
                let wd = cur.config.set_workdir(p);
                let op = (wd != "/").then(|| FsOp::Mkdir {
                    path: wd.clone(),
                    user: cur.config.user(),
                });
                (format!("WORKDIR {wd}"), op)
            }
            Command::Run(run) => {
                let argv = run_argv(&cur.config, &run.command, &ins.heredocs).map_err(err)?;
                let args: Vec<(String, String)> = step
                    .args
                    .iter()
                    .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                inputs.args = step.args.clone();
                // ENV wins over an ARG of the same name.
                let mut env = cur.config.env_list();
                for (k, v) in &step.args {
                    if !cur.config.env().iter().any(|(e, _)| e == k) {
                        env.push(format!("{k}={v}"));
                    }
                }
                let network = match run.network {
                    Some(Network::Host) => NetworkMode::Host,
                    _ => NetworkMode::None,
                };
                let cwd = cur.config.workdir();
                let (mounts, mount_env) =
                    self.plan_mounts(&run.mounts, &cwd, results, bases, ins, &mut inputs)?;
                env.extend(mount_env);
                (
                    run_created_by(&argv, &args),
                    Some(FsOp::Run {
                        argv,
                        env,
                        cwd,
                        user: cur.config.user(),
                        network,
                        mounts,
                        sources: self.mount_sources.clone(),
                    }),
                )
            }
            Command::Copy(c) | Command::Add(c) => {
                let is_add = matches!(ins.command, Command::Add(_));
                let op = self.copy_op(cur, c, is_add, ins, results, bases, &mut inputs)?;
                (copy_created_by(c, is_add), Some(op))
            }
            Command::From(_) => return Err(err("FROM inside a stage".into())),
        };

        if let (Some(io), Some(FsOp::Run { mounts, .. })) = (self.cache_io, &op) {
            for m in mounts {
                if let MountPlan::Cache { dir, .. } = m {
                    io.record_mount(dir);
                }
            }
        }
        if let Some(img) = self.cached(&inputs) {
            if let Some(io) = self.cache_io {
                io.record(&inputs, &img);
            }
            cur.image = Some(img);
            cur.key = inputs.key();
            return Ok(false);
        }
        let reason = (!self.no_cache && !self.stage_no_cache && !parent_ran)
            .then(|| self.cache.explain(&inputs));
        self.progress.miss(n, reason.as_deref());
        let img = match op {
            None => self.commit(cur, None, created_by)?,
            Some(op) => {
                self.prepare_imported(cur, &op)?;
                let fs = FsStep {
                    store: self.store,
                    exec: self.exec,
                    line: ins.start_line,
                    text: ins.original.trim().to_string(),
                };
                let progress = &mut *self.progress;
                let out = fs.run(cur.image.as_ref(), &op, &mut |b| progress.output(n, b))?;
                match out.layer {
                    Some(mut file) => {
                        let img = self.commit(cur, Some(&mut file), created_by)?;
                        // The upper directory is the new layer's snapshot: no unpacking
                        // (its times clamped as the layer's are).
                        if let Some(e) = self.epoch {
                            berth_store::epoch::clamp_tree(&out.upper, e)
                                .map_err(|e| BuildError::io("clamping times in", &out.upper, e))?;
                        }
                        if let Some(l) = self.store.layers(&img)?.last() {
                            self.store.adopt_snapshot(&l.diff_id, &out.upper)?;
                        }
                        img
                    }
                    None => self.commit(cur, None, created_by)?,
                }
            }
        };
        self.cache.put(&inputs, &img);
        if let Some(io) = self.cache_io {
            io.record(&inputs, &img);
        }
        cur.image = Some(img);
        cur.key = inputs.key();
        Ok(true)
    }
}

/// RUN's argv, heredocs included as BuildKit runs them: a command that is one heredoc runs its
/// content through the shell; otherwise the heredoc bodies follow the command line, so the
/// shell reads them as its own heredocs.
fn run_argv(
    config: &StageConfig,
    cmd: &crate::frontend::CommandLine,
    heredocs: &[crate::frontend::Heredoc],
) -> Result<Vec<String>, String> {
    use crate::frontend::CommandLine;
    let CommandLine::Shell(line) = cmd else {
        return Ok(config.argv(cmd));
    };
    if heredocs.is_empty() {
        return Ok(config.argv(cmd));
    }
    let single = heredocs.len() == 1
        && crate::frontend::heredoc_marker(line.trim()).is_some_and(|h| h.name == heredocs[0].name);
    let text = if single {
        let data = heredocs[0].data();
        if data.starts_with("#!") {
            return Err("a heredoc with a #! line is not supported by berth yet".into());
        }
        data
    } else {
        let mut full = line.clone();
        for h in heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        full
    };
    Ok(config.argv(&CommandLine::Shell(text)))
}

/// COPY/ADD history as BuildKit writes it.
fn copy_created_by(c: &Copy, is_add: bool) -> String {
    let mut s = String::from(if is_add { "ADD" } else { "COPY" });
    if c.parents {
        s.push_str(" --parents");
    }
    if let Some(o) = &c.chown {
        s.push_str(&format!(" --chown={o}"));
    }
    if let Some(m) = &c.chmod {
        s.push_str(&format!(" --chmod={m}"));
    }
    for src in &c.sources {
        match src {
            Source::Path(p) => s.push_str(&format!(" {p}")),
            Source::Heredoc(h) => s.push_str(&format!(" <<{}", h.name)),
        }
    }
    s.push_str(&format!(" {} # buildkit", c.dest));
    s
}
