package main

func initCommand() *command { return &command{Use: "init", Short: "Create a commented armoriq.yaml", Hidden: true} }
