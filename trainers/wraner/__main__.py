from trainers.wraner.cli import main

main()
