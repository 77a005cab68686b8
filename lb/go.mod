module hits/lb

go 1.25.0
