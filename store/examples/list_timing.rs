use std::time::Instant;
fn main() {
    let root = std::env::args().nth(1).unwrap();
    let t = Instant::now();
    let s = berth_store::Store::open(&root).unwrap();
    let t1 = t.elapsed();
    let raw = std::fs::read(s.index_path()).unwrap();
    let t2 = t.elapsed();
    let _v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let t3 = t.elapsed();
    let idx = s.read_index().unwrap();
    let t4 = t.elapsed();
    let imgs = s.images().unwrap();
    let t5 = t.elapsed();
    let mut n = 0;
    for i in &imgs {
        for tg in &i.tags {
            n += berth_store::Reference::parse(&tg.to_string()).is_ok() as usize;
        }
    }
    let t6 = t.elapsed();
    eprintln!(
        "open {t1:?} read {:?} value {:?} index {:?} images {:?} 1000 ref parses {:?} ({} {} {n})",
        t2 - t1,
        t3 - t2,
        t4 - t3,
        t5 - t4,
        t6 - t5,
        idx.len(),
        imgs.len()
    );
}
