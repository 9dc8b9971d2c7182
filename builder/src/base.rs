//! Base images (FROM and `COPY --from=<image>`): taken from the local store, else pulled from
//! their registry with the store's pull client, as `docker build` does (`--pull`: always
//! pulled, to get a newer version). Pull progress reaches the build's progress as notes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use berth_store::remote::error::RemoteError;
use berth_store::remote::{self, Options};
use berth_store::{Image, Reference, Store, StoreError};

use crate::progress::Progress;

/// Why a base image could be neither found locally nor pulled.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such image in the local store, and {0:?} is not a reference that can be pulled")]
    NotPullable(String),
    #[error(transparent)]
    Pull(#[from] RemoteError),
    /// The pull's thread ended without an outcome (it panicked).
    #[error("the pull stopped unexpectedly")]
    PullStopped,
}

/// Resolves `r` locally (unless `always_pull`), else pulls it; `Err` says why neither worked.
pub fn resolve(
    store: &Store,
    r: &str,
    always_pull: bool,
    progress: &mut dyn Progress,
) -> Result<Image, BaseError> {
    if !always_pull {
        match store.resolve_image(r) {
            Ok(img) => return Ok(img),
            Err(StoreError::ImageNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // An image ID names nothing a registry could serve.
    if r.starts_with("sha256:") || Reference::parse(r).is_err() {
        return Err(BaseError::NotPullable(r.to_string()));
    }
    pull(store, r, progress)?;
    Ok(store.resolve_image(r)?)
}

/// Pull progress, sent line by line to the thread that owns the build's progress.
struct Notes(Mutex<mpsc::Sender<String>>);

impl remote::Progress for Notes {
    fn end(&self, id: &str, status: &str) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(format!("{id}: {status}"));
        }
    }
}

fn pull(store: &Store, r: &str, progress: &mut dyn Progress) -> Result<(), BaseError> {
    let opts = Options::for_root(store, &[])?;
    progress.note(&format!("pulling {r}"));
    let (tx, rx) = mpsc::channel::<String>();
    // The pull runs beside this thread so its progress streams; the build itself stays on
    // this thread (the sandbox starts from it), and the pull's runtime is gone when it ends.
    let outcome = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let notes: Arc<dyn remote::Progress> = Arc::new(Notes(Mutex::new(tx)));
            remote::pull(store, r, &opts, notes)
        });
        for line in rx {
            progress.note(&line);
        }
        worker.join()
    });
    match outcome {
        Ok(Ok(out)) => {
            progress.note(&format!("Digest: {}", out.digest));
            let status = if out.updated {
                "Downloaded newer image for"
            } else {
                "Image is up to date for"
            };
            progress.note(&format!("Status: {status} {}", out.reference));
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(BaseError::PullStopped),
    }
}
