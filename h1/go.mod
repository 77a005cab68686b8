module hits/h1

go 1.26.0
