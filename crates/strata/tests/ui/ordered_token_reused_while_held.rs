// While a guard lives, the token it was locked with is borrowed: it cannot
// be used again to lock another mutex of the same (or an earlier) level.
use strata::sync::ordered::{LockToken, OrderedMutex};

strata::lock_levels!(pub Accounts);

fn main() {
    let alice = OrderedMutex::<Accounts, _>::new(1);
    let bob = OrderedMutex::<Accounts, _>::new(2);
    let mut root = LockToken::root().unwrap();
    let (a, _) = alice.lock(&mut root);
    let (b, _) = bob.lock(&mut root);
    println!("{}", *a + *b);
}
