// A declared cycle between levels (each after the other) does not compile:
// the ranks would be infinite.
use strata::sync::ordered::{Level, LockToken, OrderedMutex, rank::Next};

pub struct Accounts;
pub struct Journal;

impl Level for Accounts {
    type Rank = Next<<Journal as Level>::Rank>;
    const NAME: &'static str = "Accounts";
}

impl Level for Journal {
    type Rank = Next<<Accounts as Level>::Rank>;
    const NAME: &'static str = "Journal";
}

fn main() {
    let accounts = OrderedMutex::<Accounts, _>::new(1);
    let mut root = LockToken::root().unwrap();
    let _ = accounts.lock(&mut root);
}
