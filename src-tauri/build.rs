// Tauri reads tauri.conf.json from the package folder (the repo root), checks that frontendDist
// (ui/dist) exists, and generates the capability/permission glue.
fn main() {
    tauri_build::build()
}
