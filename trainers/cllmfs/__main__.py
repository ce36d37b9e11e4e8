from trainers.cllmfs.cli import main

main()
