// A chain that comes back to a level it started from does not compile.
strata::lock_levels!(pub Accounts => pub Journal => pub Accounts);

fn main() {}
