//! The transitions a container's current state refuses, in Docker's words: a caller that must
//! tell them apart (an API answering 409, a retry) matches the variant, never the message.

/// A lifecycle operation the container's state does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateConflict {
    #[error("Container {id} is already paused")]
    AlreadyPaused { id: String },
    #[error("Container {id} is not running")]
    NotRunning { id: String },
    #[error("Container {id} is not paused")]
    NotPaused { id: String },
    #[error("cannot kill container: {name}: container {id} is not running")]
    KillNotRunning { name: String, id: String },
    #[error(
        "cannot remove container \"/{name}\": container is running: stop the container before removing or force remove"
    )]
    RemoveRunning { name: String },
}
