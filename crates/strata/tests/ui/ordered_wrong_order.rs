// Locking an earlier level while holding a later one is a type error.
use strata::sync::ordered::{LockToken, OrderedMutex};

strata::lock_levels!(pub Config => pub Journal);

fn main() {
    let config = OrderedMutex::<Config, _>::new(1);
    let journal = OrderedMutex::<Journal, _>::new(2);
    let mut root = LockToken::root().unwrap();
    let (_journal, mut after_journal) = journal.lock(&mut root);
    let (_config, _) = config.lock(&mut after_journal);
}
