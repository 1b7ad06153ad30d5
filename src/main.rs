fn main() -> miette::Result<()> {
    mkedsl::cli::main()
}
