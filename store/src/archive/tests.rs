//! Round trips through `save`/`load` and the archives other tools write, built in temp dirs.

mod fixtures;
mod load;
mod oci;
mod save;
