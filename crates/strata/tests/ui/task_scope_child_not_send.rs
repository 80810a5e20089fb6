// Children run on other threads: what they capture must be Send.
use std::rc::Rc;

fn main() {
    let shared = Rc::new(5);
    strata::task::scope(|s| {
        s.spawn(move |_| {
            println!("{shared}");
            Ok(())
        });
    })
    .unwrap();
}
