console.log("hello from yarn");
