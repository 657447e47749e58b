fn main() {
    let _ = veil_engine::ctx();
}
