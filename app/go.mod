module hits/app

go 1.25.0
