// A scope child may only borrow what outlives the whole scope: a local of
// the scope body dies while the child may still run.
fn main() {
    strata::task::scope(|s| {
        let local = vec![1, 2, 3];
        s.spawn(|_| {
            println!("{local:?}");
            Ok(())
        });
    })
    .unwrap();
}
