plugins { java; application }
application { mainClass.set("Hello") }
