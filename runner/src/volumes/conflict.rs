//! What volumes refuse because of what already exists, in Docker's words: a caller that must tell
//! the cases apart matches the variant, never the message.

/// A volume request that conflicts with the mounts or users already there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeConflict {
    /// Two mounts of one container at the same destination.
    #[error("Duplicate mount point: {destination}")]
    DuplicateMountPoint { destination: String },
    /// `volume rm` of a volume that containers (running or not) still mount.
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
}
